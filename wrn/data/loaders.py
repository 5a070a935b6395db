"""The loaders: a CPU DataLoader (per-sample crop/flip in worker processes) and a device-resident
loader (the uint8 split on the device, batched crop/flip there), both epoch-seeded; and the stack
of S training loaders that feeds a fused copies=S network. Each yields normalised float32
(N, 3, H, W) images and int64 labels."""

from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from wrn.data.augment import CropFlip, normalize, random_crop_flip, random_crop_flip_one
from wrn.data.sampling import EpochCounter, EpochShuffle, StackedEpochs, mix_seed
from wrn.data.splits import Split


class AugmentedImages(Dataset):
    """CPU-path dataset: per-sample `random_crop_flip_one` (same distribution as the batched
    device path), then normalisation. A key is an index, or (index, seed) from `EpochShuffle`:
    that sample's crop and flip are then drawn from `seed`, not from the worker's RNG."""

    def __init__(self, split: Split, mean: Sequence[float], std: Sequence[float],
                 augmentation: Optional[CropFlip]):
        self.split = split
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.split.labels)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = self.split.images[index]
        if self.augmentation is not None:
            a = self.augmentation
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            image = random_crop_flip_one(image, a.crop, a.pad, a.pad_mode, a.flip, generator)
        return normalize(image, self.mean, self.std), self.split.labels[index]


class DeferredDataLoader(DataLoader):
    """A DataLoader whose iterator is made at the first batch asked for, not when iter() is called.

    Lightning calls iter() on the training loader while it sets up, before it restores a
    checkpoint and before its first `set_epoch`, and reuses that iterator for the first epoch it
    runs. Worker processes start loading the moment an iterator exists, so a resumed run would
    train its first epoch on epoch 0's order; made at the first batch, the iterator follows the
    epoch Lightning has set by then."""

    def __iter__(self):
        yield from super().__iter__()


def cpu_loader(split: Split, mean: Sequence[float], std: Sequence[float], augmentation: Optional[CropFlip],
               batch_size: int, train: bool, num_workers: int, seed: int, pin_memory: bool) -> DataLoader:
    """The CPU path: order, crops and flips from (seed, epoch), whatever the worker count. The
    loader's own generator seeds its workers, so making an iterator draws nothing from the global
    RNG, which dropout uses and LitClassifier reseeds every epoch."""
    sampler = EpochShuffle(len(split.labels), seed) if train else None
    return DeferredDataLoader(AugmentedImages(split, mean, std, augmentation), batch_size=batch_size,
                              sampler=sampler, drop_last=train, num_workers=num_workers,
                              generator=torch.Generator().manual_seed(seed),
                              persistent_workers=num_workers > 0, pin_memory=pin_memory)


class DeviceLoader:
    """Batches straight from a uint8 split held on one device: per-epoch seeded permutation, rank
    sharding, batched crop/flip and normalisation on the device. Yields (float images, labels)."""

    batch_sampler = None  # Lightning probes dataloader.batch_sampler next to .sampler

    def __init__(self, split: Split, batch_size: int, mean: Sequence[float], std: Sequence[float],
                 augmentation: Optional[CropFlip] = None, shuffle: bool = False, drop_last: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None):
        self.device = torch.device(device) if device is not None else split.images.device
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.batch_size, self.augmentation = batch_size, augmentation
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.sampler = EpochCounter()

    def _per_rank(self) -> int:
        count = len(self.labels)
        return count // self.world_size if self.drop_last else math.ceil(count / self.world_size)

    def __len__(self) -> int:
        per_rank = self._per_rank()
        return per_rank // self.batch_size if self.drop_last else math.ceil(per_rank / self.batch_size)

    def shard(self, epoch: int) -> Tensor:
        """This rank's sample indices for `epoch`. All ranks draw the same permutation and take
        every world_size-th entry, so shards are disjoint; equal shard sizes (tail dropped for
        training, wrapped around for evaluation like DistributedSampler) keep ranks in step."""
        count = len(self.labels)
        if self.shuffle:
            order = torch.randperm(count, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        else:
            order = torch.arange(count)
        total = self._per_rank() * self.world_size
        order = order[:total] if total <= count else torch.cat([order, order[:total - count]])
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.sampler.epoch
        self.sampler.epoch += 1  # outside Lightning, each pass gets a fresh order
        indices = self.shard(epoch).to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(mix_seed(self.seed, epoch, self.rank, 1))
        for batch in range(len(self)):
            chosen = indices[batch * self.batch_size:(batch + 1) * self.batch_size]
            images = self.images[chosen]
            if self.augmentation is not None:
                a = self.augmentation
                images = random_crop_flip(images, a.crop, a.pad, a.pad_mode, a.flip, generator)
            yield normalize(images, self.mean, self.std), self.labels[chosen]


class StackedLoader:
    """S training loaders in step: yields images (N, 3S, H, W), copy i in channels [3i, 3i+3),
    and labels (N, S), the input layout of a copies=S network."""

    batch_sampler = None

    def __init__(self, loaders: Sequence):
        self.loaders = list(loaders)
        self.sampler = StackedEpochs(self.loaders)

    def __len__(self) -> int:
        return min(len(loader) for loader in self.loaders)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batches in zip(*self.loaders):
            yield torch.cat([b[0] for b in batches], dim=1), torch.stack([b[1] for b in batches], dim=1)

