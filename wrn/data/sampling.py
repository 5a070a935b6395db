"""Epoch-seeded orders: every loader's data order, crops and flips are functions of (seed, epoch),
so a run resumed at any epoch, with any number of worker processes, sees what an uninterrupted
run saw. Lightning calls `loader.sampler.set_epoch(epoch)` at every epoch start."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def mix_seed(*numbers: int) -> int:
    """One well-mixed 63-bit seed from several integers (seed, epoch, rank)."""
    return int(np.random.SeedSequence([n % 2**64 for n in numbers]).generate_state(1, np.uint64)[0] >> 1)


class EpochCounter:
    """Lightning calls `loader.sampler.set_epoch(epoch)` at every epoch start; exposing this as
    the loader's `sampler` makes a resumed run see the same orders as an uninterrupted one."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class EpochShuffle(Sampler):
    """The CPU loader's training order: a permutation seeded by (seed, epoch) as DeviceLoader's is,
    drawn when the first batch is, after Lightning's `set_epoch`; so a resumed run sees the orders
    an uninterrupted one did. Outside Lightning each pass takes the next epoch's order.

    Yields (index, augmentation seed) keys: each sample's crop and flip seed comes from the same
    (seed, epoch) stream, so they do not depend on which worker loads it or on how many there
    are, and a run resumed with any num_workers sees the crops an uninterrupted one did."""

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


class StackedEpochs:
    """Forwards Lightning's per-epoch `set_epoch` to every stacked loader's sampler."""

    def __init__(self, loaders):
        self.samplers = [getattr(loader, "sampler", None) for loader in loaders]

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
