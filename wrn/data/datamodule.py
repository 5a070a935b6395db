"""The DataModule: CIFAR-10/100 or SVHN (see `DATASETS`) as one uint8 array in memory, with a
held-out validation split, a CPU DataLoader or a device-resident loader.

Sources, picked from what `root` holds: an image-folder tree `root/train/<class>/*.jpg|jpeg|png`
(optional `root/test/<class>/`), decoded once and cached as .npy files; otherwise torchvision's
own dataset files (downloaded when `download` is true), which are arrays already and not cached.
Every loader yields normalised float32 (N, 3, H, W) images and int64 labels; training batches are
pad-crop-flip augmented, evaluation batches are full 32x32 images (see `wrn.data.augment.eval_views`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, get_args

import lightning as L
import numpy as np
import torch

from wrn.data.augment import AUGMENTS, PAD_MODES, Augment, CropFlip, PadMode, crop_size
from wrn.data.cache import default_cache_dir, load_tree_split
from wrn.data.datasets import DATASETS, IMAGE_SIZE, DataError, DatasetName, check_choice
from wrn.data.loaders import DeviceLoader, StackedLoader, cpu_loader
from wrn.data.sources import ROOT_HINT, has_loose_class_folders, list_image_tree, load_torchvision_split
from wrn.data.splits import Split, channel_stats, first_per_class, split_indices, to_split

LoaderKind = Literal["auto", "dataloader", "gpu"]
LOADERS = get_args(LoaderKind)


class CIFARData(L.LightningDataModule):
    """CIFAR-10/100 or SVHN with a held-out validation split carved from train.

    Attributes other modules read: `num_classes`, `crop_size` (set at construction), `mean`/`std`
    (per-channel, [0, 1] units, set by `setup`), `pad`, `pad_mode`, `zero_fill`, `classes`.

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
        loader: dataloader (CPU DataLoader), gpu (uint8 split resident on the device, batched
            crop/flip there) or auto (gpu when training on CUDA).
        cache_dir: Folder for decoded image trees (.npy); null = $XDG_CACHE_HOME/wrn/decoded,
            else ~/.cache/wrn/decoded. Nothing is written into root.
        eval_batch_size: Images per validation/test batch; null = batch_size.
        copies: Independent training streams stacked along channels (fused multi-seed); set
            from model.copies.
        seed: Run seed: data order, crops and flips are functions of (seed + copy, epoch); set
            from seed_everything. null (seed_everything true or false) takes the process's seed.
        progress: Show the "decoding images" progress bar; set from trainer.enable_progress_bar.
    """

    def __init__(
        self,
        dataset: DatasetName = "cifar10",
        root: str = "~/.cache/wrn/data",
        batch_size: int = 128,  # images
        val_size: int = 5000,  # images
        split_seed: int = 0,
        augment: Augment = "pad-crop-32",
        pad: int = 4,  # pixels per side
        pad_mode: PadMode = "reflect",
        subset: Optional[int] = None,  # images per class
        num_workers: int = 2,  # processes
        download: bool = True,
        loader: LoaderKind = "auto",
        cache_dir: Optional[str] = None,
        eval_batch_size: Optional[int] = None,  # images
        copies: int = 1,
        seed: Optional[int] = 0,
        progress: bool = True,
    ):
        super().__init__()
        for name, value, choices in (("dataset", dataset, DATASETS), ("augment", augment, AUGMENTS),
                                     ("pad_mode", pad_mode, PAD_MODES), ("loader", loader, LOADERS)):
            check_choice(name, value, tuple(choices))
        self._check_sizes(batch_size, val_size, pad, subset, num_workers, eval_batch_size)
        self.dataset, self.root, self.download, self.cache_dir = dataset, root, download, cache_dir
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_size, self.split_seed, self.subset = val_size, split_seed, subset
        self.augment, self.pad, self.pad_mode = augment, pad, pad_mode
        self.num_workers, self.loader = num_workers, loader
        self.seed, self.progress = seed, progress
        if copies < 1:
            raise DataError(f"copies={copies} must be >= 1")
        self.copies = copies
        self.num_classes = DATASETS[dataset].num_classes
        self.crop_size = crop_size(augment)
        self.mean: Optional[tuple[float, ...]] = None
        self.std: Optional[tuple[float, ...]] = None
        self.classes: Optional[list[str]] = None
        self._prepared: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # prepare_data's arrays, for setup
        self._train: Optional[Split] = None
        self._val: Optional[Split] = None
        self._test: Optional[Split] = None

    @staticmethod
    def _check_sizes(batch_size, val_size, pad, subset, num_workers, eval_batch_size) -> None:
        checks = [
            (batch_size < 1, f"batch_size={batch_size} must be >= 1"),
            (val_size < 0, f"val_size={val_size} must be >= 0"),
            (not 0 <= pad < IMAGE_SIZE, f"pad={pad} must be in 0..{IMAGE_SIZE - 1}"),
            (subset is not None and subset < 1, f"subset={subset} must be >= 1 or None"),
            (num_workers < 0, f"num_workers={num_workers} must be >= 0"),
            (eval_batch_size is not None and eval_batch_size < 1,
             f"eval_batch_size={eval_batch_size} must be >= 1"),
        ]
        problems = [message for bad, message in checks if bad]
        if problems:
            raise DataError("; ".join(problems))

    # ------------------------------------------------------------ where the data is

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser()

    def _tree_dir(self, split: str) -> Optional[Path]:
        """root/<split> when root is an image-folder tree, else None."""
        path = self.root_path / split
        return path if path.is_dir() else None

    def _is_tree(self) -> bool:
        return self._tree_dir("train") is not None

    def has_test_split(self) -> bool:
        return self._tree_dir("test") is not None or not self._is_tree()

    def _check_root(self) -> None:
        root = self.root_path
        if not root.exists() and not self.download:
            raise DataError(f"data root {root} does not exist (and download=False); {ROOT_HINT}")
        if root.is_dir() and not self._is_tree() and has_loose_class_folders(root):
            raise DataError(f"{root} holds class folders but no train/ folder; "
                            f"expected {root}/train/<class>/*.jpg")

    def _cache_dir(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    def _take_arrays(self, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
        """The split's arrays decoded by prepare_data in this process (handed over, so no second
        copy stays alive), else read now."""
        return self._prepared.pop(split, None) or self._read_arrays(split)

    def _read_arrays(self, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
        """uint8 NCHW images and int64 labels of one split, train already cut to `subset`."""
        self._check_root()
        per_class = self.subset if split == "train" else None
        if self._is_tree():
            images, labels = self._read_tree(split, per_class)
        else:
            images, labels = load_torchvision_split(self.dataset, self.root_path, split == "train", self.download)
            if per_class is not None:
                keep = first_per_class(labels, per_class)
                images, labels = images[keep], labels[keep]
        self._check_label_range(labels)
        return images, labels

    def _read_tree(self, split: str, per_class: Optional[int]) -> tuple[np.ndarray, np.ndarray]:
        split_dir = self._tree_dir(split)
        if split_dir is None:
            raise DataError(f"{self.root_path} has no {split} split: the {split} stage needs "
                            f"{self.root_path / split}/<class>/ images")
        classes = None if split == "train" else self.classes or list_image_tree(self.root_path / "train")[2]
        images, labels, self.classes = load_tree_split(split_dir, self._cache_dir(), classes, per_class,
                                                       self.progress)
        return images, labels

    def _check_label_range(self, labels: np.ndarray) -> None:
        found = int(labels.max()) + 1 if len(labels) else 0
        if found > self.num_classes:
            raise DataError(f"{self.root_path} has {found} classes but dataset={self.dataset!r} has "
                            f"{self.num_classes}; pass the matching --data.dataset")

    # ------------------------------------------------------------ Lightning hooks

    def prepare_data(self) -> None:
        """Runs once per node before `setup` on every rank: decode (or download) and fill the cache."""
        self._prepared["train"] = self._read_arrays("train")
        if self.has_test_split():
            self._prepared["test"] = self._read_arrays("test")

    def setup(self, stage: Optional[str] = None) -> None:
        if self._train is None:
            self._setup_train_val()
        wants_test = stage in ("test", "predict") or (self.val_size == 0 and self.has_test_split())
        if wants_test and self._test is None:
            self._test = to_split(*self._take_arrays("test"))

    def _setup_train_val(self) -> None:
        images, labels = self._take_arrays("train")
        if self.val_size >= len(labels):
            raise DataError(f"val_size={self.val_size} must be smaller than the {len(labels)} training images "
                            f"in {self.root_path}; lower --data.val_size")
        train_index, val_index = split_indices(len(labels), self.val_size, self.split_seed)
        if len(train_index) < self.batch_size:
            raise DataError(f"only {len(train_index)} training images remain after val_size={self.val_size}, "
                            f"fewer than batch_size={self.batch_size}; lower --data.batch_size")
        self._train = to_split(images[train_index], labels[train_index])
        self._val = to_split(images[val_index], labels[val_index]) if self.val_size else None
        self.mean, self.std = channel_stats(self._train.images)

    @property
    def train_set(self) -> Optional[Split]:
        """The training part (after `subset` and the val split), uint8 on the CPU; None before setup."""
        return self._train

    @property
    def val_set(self) -> Optional[Split]:
        return self._val

    @property
    def test_set(self) -> Optional[Split]:
        return self._test

    @property
    def zero_fill(self) -> Optional[tuple[float, ...]]:
        """A black pixel after normalisation: the `fill` that makes `eval_views` pad like "zero" training."""
        if self.mean is None or self.std is None:
            return None
        return tuple(-m / s for m, s in zip(self.mean, self.std))

    @property
    def train_augmentation(self) -> Optional[CropFlip]:
        if self.augment == "pad-crop-32":
            return CropFlip(IMAGE_SIZE, self.pad, self.pad_mode, flip=True)
        if self.augment == "crop-28":
            return CropFlip(self.crop_size, 0, self.pad_mode, flip=True)  # crops inside the image: no padding
        return None

    def train_dataloader(self):
        split = self._require(self._train, "fit")
        if self.copies == 1:
            return self._make_loader(split, train=True)
        # Copy i sees its own data order, seeded as a separate run with seed + i would be.
        return StackedLoader([self._make_loader(split, train=True, seed_offset=i)
                              for i in range(self.copies)])

    def val_dataloader(self):
        if self._train is None:
            self.setup("validate")
        split = self._val if self._val is not None else self._test
        if split is None:
            raise DataError(f"val_size=0 and {self.root_path} has no test split: nothing to validate on; "
                            "set --data.val_size > 0")
        return self._make_loader(split, train=False)

    def test_dataloader(self):
        return self._make_loader(self._require(self._test, "test"), train=False)

    def predict_dataloader(self):
        return self.test_dataloader()

    def _require(self, split: Optional[Split], stage: str) -> Split:
        if split is None:
            self.setup(stage)
            split = self._train if stage == "fit" else self._test
        return split

    # ------------------------------------------------------------ loader construction

    def _trainer_device(self) -> Optional[torch.device]:
        return self.trainer.strategy.root_device if self.trainer is not None else None

    def _uses_device_loader(self) -> bool:
        device = self._trainer_device()
        return self.loader == "gpu" or (self.loader == "auto" and device is not None and device.type == "cuda")

    def _make_loader(self, split: Split, train: bool, seed_offset: int = 0):
        """Copy i of a fused run draws from seed + i, as a separate run with that seed would."""
        augmentation = self.train_augmentation if train else None
        batch_size = self.batch_size if train else self.eval_batch_size
        # An unseeded run (seed_everything true/false) has no seed of its own: it takes the one the
        # process was given, which Lightning set just before it built this DataModule.
        seed = (self.seed if self.seed is not None else torch.initial_seed()) + seed_offset
        if self._uses_device_loader():
            return self._device_loader(split, train, augmentation, batch_size, seed)
        device = self._trainer_device()
        return cpu_loader(split, self.mean, self.std, augmentation, batch_size, train, self.num_workers,
                          seed, pin_memory=device is not None and device.type == "cuda")

    def _device_loader(self, split: Split, train: bool, augmentation: Optional[CropFlip],
                       batch_size: int, seed: int) -> DeviceLoader:
        device = self._trainer_device() or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        attached = self.trainer is not None
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if attached else (0, 1)
        # Every rank gets the same seed, so all draw the same permutation and their shards stay disjoint.
        return DeviceLoader(split, batch_size, self.mean, self.std, augmentation, shuffle=train, drop_last=train,
                            seed=seed, rank=rank, world_size=world_size, device=device)
