"""Epoch-seeded loaders of normalised float32 images and int64 labels: on the CPU, on a device,
stacked. Data orders, crops and flips are functions of (seed, epoch), so a run resumed at any epoch,
with any number of workers, sees what an uninterrupted one saw; Lightning calls
`loader.sampler.set_epoch`."""

from __future__ import annotations

import ctypes
import signal
import sys
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from wrn.data.augment import CropFlip, normalize, random_crop_flip, random_crop_flip_one

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends


class Split(NamedTuple):
    images: Tensor  # uint8 (N, 3, H, W)
    labels: Tensor  # int64 (N,)


def mix_seed(*numbers: int) -> int:
    """One well-mixed 63-bit seed from several integers (seed, epoch, rank)."""
    return int(np.random.SeedSequence([n % 2**64 for n in numbers]).generate_state(1, np.uint64)[0] >> 1)


def _share(count: int, parts: int, drop_last: bool) -> int:
    """count / parts, rounded down when the tail is dropped, else up."""
    return count // parts if drop_last else -(-count // parts)


def shard(order: Tensor, rank: int, world_size: int, drop_last: bool) -> Tensor:
    """Rank `rank`'s share of `order`, which all ranks share: every world_size-th item, the tail
    dropped (training) or wrapped around (evaluation) so that ranks stay in step."""
    count = len(order)
    total = _share(count, world_size, drop_last) * world_size
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


class AugmentedImages(Dataset):
    """The CPU path's images, cropped, flipped and normalised one by one. A key is an index, or
    (index, seed) from `EpochShuffle`: the crop and flip then come from `seed`, not the worker's RNG."""

    def __init__(self, split: Split, mean: Sequence[float], std: Sequence[float],
                 augmentation: Optional[CropFlip]):
        self.split, self.augmentation = split, augmentation
        self.mean, self.std = (torch.tensor(values, dtype=torch.float32) for values in (mean, std))

    def __len__(self) -> int:
        return len(self.split.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = self.split.images[index]
        if self.augmentation is not None:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            image = random_crop_flip_one(image, *self.augmentation, generator)
        return normalize(image, self.mean, self.std), self.split.labels[index]


class DeferredDataLoader(DataLoader):
    """A DataLoader whose iterator is made at the first batch asked for, not when iter() is called.
    Lightning calls iter() before it restores a checkpoint and calls `set_epoch`, and workers start
    loading at once, so a resumed run would otherwise train its first epoch on epoch 0's order."""

    def __iter__(self):
        yield from super().__iter__()


def _start_worker(worker_id: int) -> None:
    """A worker outlives the SIGTERM sent to its whole process group (`timeout`, `scancel`): the main
    process stops training, records the run, then stops it. On Linux it dies with a killed main
    process at once, rather than holding the run's lock until it notices."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def cpu_loader(split: Split, mean: Sequence[float], std: Sequence[float], augmentation: Optional[CropFlip],
               batch_size: int, train: bool, num_workers: int, seed: int, pin_memory: bool,
               rank: int = 0, world_size: int = 1) -> DataLoader:
    """The CPU path; training takes this rank's shard. Its own generator seeds the workers, so making an
    iterator draws nothing from the global RNG, which dropout uses and LitClassifier reseeds every epoch."""
    sampler = EpochShuffle(len(split.labels), seed, rank, world_size) if train else None
    return DeferredDataLoader(AugmentedImages(split, mean, std, augmentation), batch_size=batch_size,
                              sampler=sampler, drop_last=train, num_workers=num_workers,
                              generator=torch.Generator().manual_seed(seed), worker_init_fn=_start_worker,
                              persistent_workers=num_workers > 0, pin_memory=pin_memory)


class DeviceLoader:
    """Batches from a uint8 split on one device, sharded by rank, cropped, flipped and normalised there."""

    batch_sampler = None  # Lightning probes it next to .sampler, the loader itself: it takes set_epoch

    def __init__(self, split: Split, batch_size: int, mean: Sequence[float], std: Sequence[float],
                 augmentation: Optional[CropFlip] = None, shuffle: bool = False, drop_last: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None):
        self.device = torch.device(device) if device is not None else split.images.device
        self.images, self.labels = split.images.to(self.device), split.labels.to(self.device)
        self.mean, self.std = (torch.tensor(v, dtype=torch.float32, device=self.device) for v in (mean, std))
        self.batch_size, self.augmentation = batch_size, augmentation
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.sampler, self.epoch = self, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        per_rank = _share(len(self.labels), self.world_size, self.drop_last)
        return _share(per_rank, self.batch_size, self.drop_last)

    def shard(self, epoch: int) -> Tensor:
        """This rank's indices for `epoch`, of a permutation all ranks share."""
        count = len(self.labels)
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        order = torch.randperm(count, generator=generator) if self.shuffle else torch.arange(count)
        return shard(order, self.rank, self.world_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1  # outside Lightning: the next
        indices = self.shard(epoch).to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(mix_seed(self.seed, epoch, self.rank, 1))
        for batch in range(len(self)):
            chosen = indices[batch * self.batch_size:(batch + 1) * self.batch_size]
            images = self.images[chosen]
            if self.augmentation is not None:
                images = random_crop_flip(images, *self.augmentation, generator)
            yield normalize(images, self.mean, self.std), self.labels[chosen]


class StackedLoader:
    """S training loaders in step, as a copies=S network takes them: images (N, 3S, H, W), labels (N, S)."""

    batch_sampler = None  # as DeviceLoader's

    def __init__(self, loaders: Sequence):
        self.loaders, self.sampler = list(loaders), self

    def set_epoch(self, epoch: int) -> None:
        for loader in self.loaders:
            loader.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return min(len(loader) for loader in self.loaders)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batches in zip(*self.loaders):
            yield torch.cat([b[0] for b in batches], dim=1), torch.stack([b[1] for b in batches], dim=1)
