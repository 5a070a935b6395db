"""Data orders, crops and flips as functions of (seed, epoch), so a run resumed at any epoch, with any
number of workers, sees what an uninterrupted one saw; Lightning calls `loader.sampler.set_epoch`."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def mix_seed(*numbers: int) -> int:
    """One well-mixed 63-bit seed from several integers (seed, epoch, rank)."""
    return int(np.random.SeedSequence([n % 2**64 for n in numbers]).generate_state(1, np.uint64)[0] >> 1)


class EpochShuffle(Sampler):
    """The CPU loader's training order, as DeviceLoader's; outside Lightning each pass takes the next
    epoch's. Yields (index, augmentation seed) keys: crops and flips do not depend on the workers."""

    def __init__(self, count: int, seed: int):
        self.count, self.seed, self.epoch = count, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(self.count, generator=generator)
        seeds = torch.randint(0, 2**62, (self.count,), generator=generator)
        return zip(order.tolist(), seeds.tolist())
