"""Data orders, crops and flips as functions of (seed, epoch), so a run resumed at any epoch, with any
number of workers, sees what an uninterrupted one saw; Lightning calls `loader.sampler.set_epoch`."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DistributedSampler


def mix_seed(*numbers: int) -> int:
    """One well-mixed 63-bit seed from several integers (seed, epoch, rank)."""
    return int(np.random.SeedSequence([n % 2**64 for n in numbers]).generate_state(1, np.uint64)[0] >> 1)


def shard(order: Tensor, rank: int, world_size: int, drop_last: bool) -> Tensor:
    """Rank `rank`'s share of `order`, which all ranks share: every world_size-th item, the tail
    dropped (training) or wrapped around (evaluation) so that ranks stay in step."""
    count = len(order)
    total = (count // world_size if drop_last else -(-count // world_size)) * world_size
    order = order[:total] if total <= count else torch.cat([order, order[:total - count]])
    return order[rank::world_size]


class EpochShuffle(DistributedSampler):
    """The CPU loader's training order and shard, as DeviceLoader's; outside Lightning each pass takes
    the next epoch's. Yields (index, augmentation seed) keys: crops and flips do not depend on the
    workers. A DistributedSampler, so that Lightning never wraps it in a second one."""

    def __init__(self, count: int, seed: int, rank: int = 0, world_size: int = 1):
        super().__init__(range(count), world_size, rank, shuffle=True, seed=seed, drop_last=True)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        count = len(self.dataset)
        keys = torch.stack([torch.randperm(count, generator=generator),
                            torch.randint(0, 2**62, (count,), generator=generator)], 1)
        return iter(map(tuple, shard(keys, self.rank, self.num_replicas, drop_last=True).tolist()))
