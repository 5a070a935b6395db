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


class EpochCounter:
    """A loader's `sampler` that only keeps the epoch Lightning sets."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class EpochShuffle(EpochCounter, Sampler):
    """The CPU loader's training order, seeded by (seed, epoch) as DeviceLoader's is; outside
    Lightning each pass takes the next epoch's. Yields (index, augmentation seed) keys, so crops and
    flips do not depend on which worker loads a sample, nor on how many there are."""

    def __init__(self, count: int, seed: int):
        super().__init__()
        self.count, self.seed = count, seed

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(self.count, generator=generator)
        seeds = torch.randint(0, 2**62, (self.count,), generator=generator)
        return zip(order.tolist(), seeds.tolist())


class StackedEpochs:
    """Forwards Lightning's per-epoch `set_epoch` to every stacked loader's sampler."""

    def __init__(self, loaders):
        self.samplers = [getattr(loader, "sampler", None) for loader in loaders]

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
