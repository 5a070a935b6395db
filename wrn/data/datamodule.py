"""`CIFARData`: a dataset as one uint8 array in memory, from an image tree (decoded once) or torchvision."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional, get_args

import lightning as L
import numpy as np
import torch

from wrn.data.augment import AUGMENTS, PAD_MODES, Augment, CropFlip, PadMode, crop_size
from wrn.data.datasets import DATASETS, IMAGE_SIZE, DataError, DatasetName, check_choice
from wrn.data.loaders import DeviceLoader, Split, StackedLoader, cpu_loader
from wrn.data.sources import (ROOT_HINT, default_cache_dir, has_loose_class_folders,
                              list_image_tree, load_torchvision_split, load_tree_split)

LoaderKind = Literal["auto", "dataloader", "gpu"]
LOADERS = get_args(LoaderKind)


def to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.as_tensor(labels, dtype=torch.int64))


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std, in [0, 1] units, of uint8 (N, C, H, W) images: no float copy made."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    counts = torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256)
                          for c in range(images.shape[1])]).double()
    means = (counts * values).sum(1) / counts.sum(1)
    stds = ((counts * (values - means[:, None]) ** 2).sum(1) / counts.sum(1)).sqrt()
    return tuple(means.tolist()), tuple(stds.tolist())


class CIFARData(L.LightningDataModule):
    """CIFAR-10/100 or SVHN with a held-out validation split carved from train.

    Args:
        dataset: Which dataset (a key of `wrn.data.DATASETS`); sets model.num_classes.
        root: Folder holding a train/<class>/*.jpg image tree (optional test/<class>/), or
            torchvision's files for the dataset (downloaded there when download is true).
        batch_size: Training images per step per device.
        val_size: Images held out of the training split for validation; 0 validates on test/.
        split_seed: Seed of the train/val permutation, independent of the run seed.
        augment: Training augmentation: pad-crop-32 (pad, random 32x32 crop, flip), crop-28
            (random 28x28 crop inside the image, flip; evaluation centre-crops) or none.
        pad: Pixels padded on each side before the random 32x32 crop (pad-crop-32 only).
        pad_mode: Padding: reflect (mirrored pixels) or zero (black).
        subset: Keep the first N training images of every class; null keeps all.
        num_workers: DataLoader worker processes (CPU loader only); results do not depend on it.
        download: Let torchvision download the dataset into root when root holds no data.
        loader: dataloader (CPU), gpu (the uint8 split and crop/flip on the device) or auto (gpu on CUDA).
        cache_dir: Folder for decoded image trees (.npy); null = $XDG_CACHE_HOME/wrn/decoded,
            else ~/.cache/wrn/decoded. Nothing is written into root.
        eval_batch_size: Images per validation/test batch; null = batch_size.
        copies: Independent training streams stacked along channels (fused multi-seed); set from model.copies.
        seed: Run seed: data order, crops and flips are functions of (seed + copy, epoch); set
            from seed_everything. null (seed_everything true or false) takes the process's seed.
        progress: Show the "decoding images" progress bar; set from trainer.enable_progress_bar.
    """

    def __init__(self, dataset: DatasetName = "cifar10", root: str = "~/.cache/wrn/data",
                 batch_size: int = 128, val_size: int = 5000, split_seed: int = 0,
                 augment: Augment = "pad-crop-32", pad: int = 4, pad_mode: PadMode = "reflect",
                 subset: Optional[int] = None, num_workers: int = 2, download: bool = True,
                 loader: LoaderKind = "auto", cache_dir: Optional[str] = None,
                 eval_batch_size: Optional[int] = None, copies: int = 1, seed: Optional[int] = 0,
                 progress: bool = True):
        super().__init__()
        for name, value, choices in (("dataset", dataset, DATASETS), ("augment", augment, AUGMENTS),
                                     ("pad_mode", pad_mode, PAD_MODES), ("loader", loader, LOADERS)):
            check_choice(name, value, tuple(choices))
        problems = [message for bad, message in (
            (batch_size < 1, f"batch_size={batch_size} must be >= 1"),
            (val_size < 0, f"val_size={val_size} must be >= 0"),
            (not 0 <= pad < IMAGE_SIZE, f"pad={pad} must be in 0..{IMAGE_SIZE - 1}"),
            (subset is not None and subset < 1, f"subset={subset} must be >= 1 or None"),
            (num_workers < 0, f"num_workers={num_workers} must be >= 0"),
            (eval_batch_size is not None and eval_batch_size < 1,
             f"eval_batch_size={eval_batch_size} must be >= 1"),
            (copies < 1, f"copies={copies} must be >= 1"),
        ) if bad]
        if problems:
            raise DataError("; ".join(problems))
        self.dataset, self.root, self.download, self.cache_dir = dataset, root, download, cache_dir
        self.root_path = Path(root).expanduser()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_size, self.split_seed, self.subset = val_size, split_seed, subset
        self.augment, self.pad, self.pad_mode = augment, pad, pad_mode
        self.num_workers, self.loader, self.copies = num_workers, loader, copies
        self.seed, self.progress = seed, progress
        self.num_classes = DATASETS[dataset].num_classes
        self.crop_size = crop_size(augment)
        self.mean = self.std = None  # per channel, in [0, 1] units: set by setup
        self.classes: Optional[list[str]] = None
        self._prepared = {}  # prepare_data's arrays, popped by setup so that no second copy stays alive
        self.train_set = self.val_set = self.test_set = None  # Splits, uint8 on the CPU: made by setup

    def _is_tree(self) -> bool:
        return (self.root_path / "train").is_dir()

    def has_test_split(self) -> bool:
        return (self.root_path / "test").is_dir() or not self._is_tree()

    def check_root(self) -> None:
        """The root's faults that show without reading an image: DataError naming the root."""
        root = self.root_path
        if not root.exists() and not self.download:
            raise DataError(f"data root {root} does not exist (and download=False); {ROOT_HINT}")
        if root.is_dir() and not self._is_tree() and has_loose_class_folders(root):
            raise DataError(f"{root} holds class folders but no train/ folder; "
                            f"expected {root}/train/<class>/*.jpg")

    def _read_arrays(self, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 NCHW images and int64 labels of one split, train already cut to `subset`."""
        self.check_root()
        root = self.root_path
        per_class = self.subset if split == "train" else None
        if self._is_tree():
            split_dir = root / split
            if not split_dir.is_dir():
                raise DataError(f"{root} has no {split} split: the {split} stage needs "
                                f"{split_dir}/<class>/ images")
            classes = None if split == "train" else (self.classes or list_image_tree(root / "train")[2])
            cache_dir = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
            images, labels, self.classes = load_tree_split(split_dir, cache_dir, classes, per_class,
                                                           self.progress)
            folders = len(self.classes)
            if folders < 2:
                raise DataError(f"{split_dir} has a single class folder ({self.classes[0]}); "
                                "a classifier needs at least 2 classes")
            if split == "train" and folders < self.num_classes and (self.trainer is None
                                                                     or self.trainer.is_global_zero):
                print(f"warning: {split_dir} has {folders} class folders but {self.dataset} has "
                      f"{self.num_classes} classes: the network keeps {self.num_classes} outputs and its "
                      f"accuracies are over these {folders} classes only", file=sys.stderr)
        else:
            images, labels = load_torchvision_split(self.dataset, root, split == "train", self.download)
            if per_class is not None:
                keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class]
                                               for c in np.unique(labels)]))
                images, labels = images[keep], labels[keep]
        found = int(labels.max()) + 1 if len(labels) else 0
        if found > self.num_classes:
            raise DataError(f"{root} has {found} classes but dataset={self.dataset!r} has "
                            f"{self.num_classes}; pass the matching --data.dataset")
        return images, labels

    def prepare_data(self) -> None:
        """Runs once per node before `setup` on every rank: decode (or download) and fill the cache."""
        self._prepared["train"] = self._read_arrays("train")
        if self.has_test_split():
            self._prepared["test"] = self._read_arrays("test")

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is None:
            images, labels = self._prepared.pop("train", None) or self._read_arrays("train")
            if self.val_size >= len(labels):
                raise DataError(f"val_size={self.val_size} must be smaller than the {len(labels)} training "
                                f"images in {self.root_path}; lower --data.val_size")
            order = np.random.default_rng(self.split_seed).permutation(len(labels))
            train_index, val_index = np.sort(order[self.val_size:]), np.sort(order[:self.val_size])
            if len(train_index) < self.batch_size:
                raise DataError(f"only {len(train_index)} training images remain after val_size="
                                f"{self.val_size}, fewer than batch_size={self.batch_size}; "
                                "lower --data.batch_size")
            self.train_set = to_split(images[train_index], labels[train_index])
            self.val_set = to_split(images[val_index], labels[val_index]) if self.val_size else None
            self.mean, self.std = channel_stats(self.train_set.images)
        wants_test = stage in ("test", "predict") or (self.val_size == 0 and self.has_test_split())
        if wants_test and self.test_set is None:
            self.test_set = to_split(*(self._prepared.pop("test", None) or self._read_arrays("test")))

    @property
    def zero_fill(self) -> Optional[tuple[float, ...]]:
        """A black pixel after normalisation: the `fill` that makes `eval_views` pad as "zero" does."""
        return None if self.mean is None else tuple(-m / s for m, s in zip(self.mean, self.std))

    @property
    def train_augmentation(self) -> Optional[CropFlip]:
        pad = self.pad if self.augment == "pad-crop-32" else 0  # crop-28 crops inside the image
        return None if self.augment == "none" else CropFlip(self.crop_size, pad, self.pad_mode, flip=True)

    def train_dataloader(self):
        if self.train_set is None:
            self.setup("fit")
        # Copy i sees its own data order, seeded as a separate run with seed + i would be.
        loaders = [self._make_loader(self.train_set, True, i) for i in range(self.copies)]
        return loaders[0] if self.copies == 1 else StackedLoader(loaders)

    def val_dataloader(self):
        if self.train_set is None:
            self.setup("validate")
        split = self.val_set if self.val_set is not None else self.test_set
        if split is None:
            raise DataError(f"val_size=0 and {self.root_path} has no test split: nothing to validate on; "
                            "set --data.val_size > 0")
        return self._make_loader(split, train=False)

    def test_dataloader(self):
        if self.test_set is None:
            self.setup("test")
        return self._make_loader(self.test_set, train=False)

    predict_dataloader = test_dataloader

    def _make_loader(self, split: Split, train: bool, seed_offset: int = 0):
        augmentation = self.train_augmentation if train else None
        batch_size = self.batch_size if train else self.eval_batch_size
        # An unseeded run (seed_everything true/false) has no seed of its own: it takes the one the
        # process was given, which Lightning set just before it built this DataModule.
        seed = (self.seed if self.seed is not None else torch.initial_seed()) + seed_offset
        attached = self.trainer is not None
        device = self.trainer.strategy.root_device if attached else None
        on_cuda = device is not None and device.type == "cuda"
        # Every rank gets the same seed, so all draw the same permutation and their shards stay disjoint.
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if attached else (0, 1)
        if self.loader == "dataloader" or (self.loader == "auto" and not on_cuda):
            return cpu_loader(split, self.mean, self.std, augmentation, batch_size, train, self.num_workers,
                              seed, on_cuda, rank, world_size)
        return DeviceLoader(split, batch_size, self.mean, self.std, augmentation, shuffle=train,
                            drop_last=train, seed=seed, rank=rank, world_size=world_size,
                            device=device or torch.device("cuda" if torch.cuda.is_available() else "cpu"))
