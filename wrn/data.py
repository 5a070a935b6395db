"""CIFAR-10/100 and SVHN as one uint8 array in memory, with a CPU DataLoader or a device-resident loader.

Sources, picked from what `root` holds: an image-folder tree `root/train/<class>/*.jpg|jpeg|png`
(optional `root/test/<class>/`), decoded once and cached as .npy files; otherwise torchvision's
own dataset files (downloaded when `download` is true), which are arrays already and not cached.
Every loader yields normalised float32 (N, 3, H, W) images and int64 labels; training batches are
pad-crop-flip augmented, evaluation batches are full 32x32 images (see `wrn.augment.eval_views`).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import socket
import tempfile
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, NamedTuple, Optional, Sequence

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from wrn.augment import normalize, random_crop_flip, random_crop_flip_one
from wrn.runs import atomic_write_json


@dataclass(frozen=True)
class DatasetFacts:
    num_classes: int
    torchvision_name: str  # class in torchvision.datasets


DATASETS = {
    "cifar10": DatasetFacts(10, "CIFAR10"),
    "cifar100": DatasetFacts(100, "CIFAR100"),
    "svhn": DatasetFacts(10, "SVHN"),
}
AUGMENTS = ("pad-crop-32", "crop-28", "none")
PAD_MODES = ("reflect", "zero")
LOADERS = ("auto", "dataloader", "gpu")
IMAGE_SIZE = 32  # pixels per side of every supported dataset
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CACHE_VERSION = 2  # bump when the cache layout or decoding changes, so old caches are ignored
DECODE_CHUNK = 1000  # images per worker task: large enough to amortise inter-process transfer
SERIAL_DECODE_BELOW = 2000  # images; fewer decode faster in-process than a pool starts
DOWNLOAD_TIMEOUT_S = 10.0  # seconds a silent download socket may wait before giving up
CACHED_ARRAYS = ("images", "labels")  # one .npy file each, beside one JSON sidecar
SHARED_FILE_MODE = 0o644  # cache files others may read (mkstemp would leave them 0600)
ROOT_HINT = "pass --data.root a local folder holding torchvision's files or a train/<class>/ image tree"


class DataError(ValueError):
    """A data problem the user must fix (bad root, layout, image, split size); always one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class Split(NamedTuple):
    images: Tensor  # uint8 (N, 3, H, W)
    labels: Tensor  # int64 (N,)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise DataError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


# ---------------------------------------------------------------- image-folder trees


def list_image_tree(split_dir: Path, classes: Optional[list[str]] = None,
                    per_class: Optional[int] = None) -> tuple[list[str], np.ndarray, list[str]]:
    """(image paths, int64 labels, class names) of `split_dir/<class>/*`, files in sorted order.

    `classes` fixes the label order (the train split's, when listing test); `per_class` keeps the
    first N files of every class.
    """
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DataError(f"{split_dir} has no class folders (expected {split_dir}/<class>/*.jpg)")
    extra = sorted(set(found) - set(classes or found))
    if extra:
        raise DataError(f"{split_dir} has class folders {extra} that the train split lacks")
    paths, labels = [], []
    for label, name in enumerate(classes or found):
        folder = split_dir / name
        files = _image_files(folder) if folder.is_dir() else []
        if not files and classes is None:
            raise DataError(f"class folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        files = files[:per_class]
        paths += [str(folder / f) for f in files]
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64), classes or found


def _image_files(folder: Path) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))


def decode_image(path: str) -> np.ndarray:
    """One image as uint8 (32, 32, 3) RGB; DataError naming the file when it is unreadable."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:  # PIL raises all three for damaged files
        raise DataError(f"cannot read image {path}: {exc}") from None
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        size = f"{pixels.shape[1]}x{pixels.shape[0]}"
        raise DataError(f"image {path} is {size} pixels, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    return pixels


def _decode_chunk(paths: Sequence[str]) -> np.ndarray:
    """uint8 (N, 3, 32, 32): channels-first here, in the workers, so that loading the cache later
    needs no slow strided transpose of the whole set."""
    if not paths:
        return np.empty((0, 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return np.ascontiguousarray(np.stack([decode_image(p) for p in paths]).transpose(0, 3, 1, 2))


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def _chunk_mapper(workers: int) -> Iterator[Callable]:
    """Plain `map`, or an ordered process-pool map; PIL decoding holds the GIL, so threads would
    not help. Forked where possible: spawned workers would re-import torch first."""
    if workers <= 1:
        yield map
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork") if "fork" in methods else None
    pool = ProcessPoolExecutor(workers, mp_context=context)
    try:
        yield pool.map
    finally:
        pool.shutdown(cancel_futures=True)  # a corrupt image stops the decode at once


def decode_images(paths: Sequence[str]) -> np.ndarray:
    """Decode all images into uint8 (N, 3, 32, 32), with a progress line."""
    chunks = [paths[i:i + DECODE_CHUNK] for i in range(0, len(paths), DECODE_CHUNK)]
    workers = 1 if len(paths) < SERIAL_DECODE_BELOW else min(_usable_cpus(), len(chunks))
    parts = [_decode_chunk([])]
    with tqdm(total=len(paths), desc="decoding images", unit="img", mininterval=2.0) as progress:
        with _chunk_mapper(workers) as mapper:
            for part in mapper(_decode_chunk, chunks):
                parts.append(part)
                progress.update(len(part))
    return np.concatenate(parts)


# ---------------------------------------------------------------- .npy cache


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary file beside `path`, fsync, rename: readers never see half an array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, SHARED_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tree_cache_key(split_dir: Path, paths: Sequence[str], classes: Sequence[str], per_class: Optional[int]) -> str:
    """Hash of everything the decoded arrays depend on: where the files are, which files (and their
    size and mtime, so edited images invalidate the cache), the label order and the subset."""
    digest = hashlib.sha1(f"{CACHE_VERSION}|{split_dir.resolve()}|{list(classes)}|{per_class}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"|{os.path.relpath(path, split_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _array_record(path: Path, array: np.ndarray) -> dict:
    checksum = zlib.crc32(np.ascontiguousarray(array))
    return {"file": path.name, "shape": list(array.shape), "dtype": str(array.dtype), "crc32": checksum}


class CacheDamaged(Exception):
    def __init__(self, path: Path, reason: str):
        super().__init__(f"cache file {path} is damaged ({reason}); rebuilding it")


def _load_checked(path: Path, record: dict) -> np.ndarray:
    """np.load one cached array and verify it against its sidecar record."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # missing, truncated or not .npy at all
        raise CacheDamaged(path, f"{type(exc).__name__}: {exc}") from None
    if list(array.shape) != record["shape"] or str(array.dtype) != record["dtype"]:
        expected = f"{record['dtype']}{record['shape']}"
        raise CacheDamaged(path, f"holds {array.dtype}{list(array.shape)}, expected {expected}")
    if zlib.crc32(np.ascontiguousarray(array)) != record["crc32"]:
        raise CacheDamaged(path, "checksum mismatch")
    return array


def _read_sidecar(sidecar: Path) -> dict:
    """The sidecar's {"images": record, "labels": record}, CacheDamaged when unreadable."""
    try:
        arrays = json.loads(sidecar.read_text(encoding="utf-8"))["arrays"]
        return {name: arrays[name] for name in CACHED_ARRAYS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheDamaged(sidecar, f"{type(exc).__name__}: {exc}") from None


def read_cache(stem: Path) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(images, labels) from `stem.json` and its .npy files, or None (with a warning when damaged)."""
    sidecar = Path(f"{stem}.json")
    if not sidecar.exists():
        return None
    try:
        records = _read_sidecar(sidecar)
        images, labels = (_load_checked(Path(f"{stem}.{name}.npy"), records[name]) for name in CACHED_ARRAYS)
    except CacheDamaged as exc:
        warnings.warn(str(exc), stacklevel=2)
        return None
    return images, labels


def write_cache(stem: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Arrays first, sidecar last: the sidecar is the commit mark a reader trusts."""
    try:
        records = {}
        for name, array in zip(CACHED_ARRAYS, (images, labels)):
            path = Path(f"{stem}.{name}.npy")
            atomic_save_npy(path, array)
            records[name] = _array_record(path, array)
        atomic_write_json(f"{stem}.json", {"version": CACHE_VERSION, "count": len(labels), "arrays": records})
        os.chmod(f"{stem}.json", SHARED_FILE_MODE)
    except OSError as exc:
        warnings.warn(f"could not write the image cache {stem}.* ({exc}); the images will be decoded again")


def default_cache_dir(root: Path) -> Path:
    """`root/.wrn-cache` so the cache travels with the data, or ~/.cache/wrn/cache when root is read-only."""
    beside_data = root / ".wrn-cache"
    try:
        beside_data.mkdir(exist_ok=True)
        if os.access(beside_data, os.W_OK):
            return beside_data
    except OSError:
        pass
    return Path("~/.cache/wrn/cache").expanduser()


def load_tree_split(split_dir: Path, cache_dir: Path, classes: Optional[list[str]] = None,
                    per_class: Optional[int] = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 NCHW images, labels, classes) of an image-folder split, from the cache when it is valid."""
    paths, labels, classes = list_image_tree(split_dir, classes, per_class)
    key = tree_cache_key(split_dir, paths, classes, per_class)
    stem = cache_dir / f"{split_dir.parent.name}-{split_dir.name}-{key}"
    cached = read_cache(stem)
    if cached is not None:
        return cached[0], cached[1], classes
    images = decode_images(paths)
    write_cache(stem, images, labels)
    return images, labels, classes


# ---------------------------------------------------------------- torchvision datasets


def load_torchvision_split(dataset: str, root: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NCHW images, int64 labels) from torchvision's files under `root`, downloading if allowed."""
    import torchvision  # deferred: only this source needs it

    kind = getattr(torchvision.datasets, DATASETS[dataset].torchvision_name)
    split = {"split": "train" if train else "test"} if dataset == "svhn" else {"train": train}
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # an offline machine must fail fast, not hang
    try:
        source = kind(str(root), download=download, **split)
    except (RuntimeError, OSError, ImportError, ValueError) as exc:  # not found, offline, corrupt, no scipy
        action = "download failed" if download else "download=False"
        reason = f"{action}: {type(exc).__name__}: {exc}"
        raise DataError(f"no {dataset} data in {root} ({reason}); {ROOT_HINT}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    images = np.asarray(source.data, dtype=np.uint8)
    if images.shape[-1] == 3:  # CIFAR stores NHWC, SVHN NCHW already
        images = images.transpose(0, 3, 1, 2)
    labels = source.labels if dataset == "svhn" else source.targets
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)


# ---------------------------------------------------------------- splits and statistics


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` samples of every class, in dataset order."""
    keep = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(keep))


def split_indices(count: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: a seeded permutation's first `val_size` go to validation."""
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std in [0, 1] units of uint8 (N, C, H, W) images, from a
    256-bin histogram so no float copy of the whole set is made."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        mean = (counts * values).sum() / counts.sum()
        variance = (counts * (values - mean) ** 2).sum() / counts.sum()
        means.append(float(mean))
        stds.append(float(variance.sqrt()))
    return tuple(means), tuple(stds)


def to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    labels = np.asarray(labels, dtype=np.int64)
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels))


# ---------------------------------------------------------------- loaders


@dataclass(frozen=True)
class CropFlip:
    """Training augmentation: pad by `pad` pixels, random `crop` x `crop` crop, optional random h-flip."""
    crop: int
    pad: int
    pad_mode: Literal["reflect", "zero"]
    flip: bool


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


class DeferredDataLoader(DataLoader):
    """A DataLoader whose iterator is made at the first batch asked for, not when iter() is called.

    Lightning calls iter() on the training loader while it sets up, before it restores a
    checkpoint and before its first `set_epoch`, and reuses that iterator for the first epoch it
    runs. Worker processes start loading the moment an iterator exists, so a resumed run would
    train its first epoch on epoch 0's order; made at the first batch, the iterator follows the
    epoch Lightning has set by then."""

    def __iter__(self):
        yield from super().__iter__()


class StackedEpochs:
    """Forwards Lightning's per-epoch `set_epoch` to every stacked loader's sampler."""

    def __init__(self, loaders: Sequence):
        self.samplers = [getattr(loader, "sampler", None) for loader in loaders]

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)


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


# ---------------------------------------------------------------- the DataModule


class CIFARData(L.LightningDataModule):
    """CIFAR-10/100 or SVHN with a held-out validation split carved from train.

    Attributes other modules read: `num_classes`, `crop_size` (set at construction), `mean`/`std`
    (per-channel, [0, 1] units, set by `setup`), `pad`, `pad_mode`, `zero_fill`, `classes`.
    """

    def __init__(
        self,
        dataset: Literal["cifar10", "cifar100", "svhn"] = "cifar10",  # which dataset; fixes num_classes
        root: str = "~/.cache/wrn/data",  # folder with train/<class>/ images or torchvision's files
        batch_size: int = 128,  # training images per step per device
        val_size: int = 5000,  # images held out of train for validation; 0 = validate on test
        split_seed: int = 0,  # seed of the train/val permutation (independent of the run seed)
        augment: Literal["pad-crop-32", "crop-28", "none"] = "pad-crop-32",  # training augmentation
        pad: int = 4,  # pixels padded per side before the random 32x32 crop (pad-crop-32 only)
        pad_mode: Literal["reflect", "zero"] = "reflect",  # padding: mirrored pixels or black
        subset: Optional[int] = None,  # keep the first N training images per class; None = all
        num_workers: int = 2,  # DataLoader worker processes (CPU loader only)
        download: bool = True,  # let torchvision download when root holds no data
        loader: Literal["auto", "dataloader", "gpu"] = "auto",  # auto = gpu when training on CUDA
        cache_dir: Optional[str] = None,  # decoded .npy cache; None = root/.wrn-cache or ~/.cache/wrn/cache
        eval_batch_size: Optional[int] = None,  # images per val/test batch; None = batch_size
        copies: int = 1,  # independent training streams stacked along channels (fused multi-seed)
    ):
        super().__init__()
        for name, value, choices in (("dataset", dataset, DATASETS), ("augment", augment, AUGMENTS),
                                     ("pad_mode", pad_mode, PAD_MODES), ("loader", loader, LOADERS)):
            _check_choice(name, value, tuple(choices))
        self._check_sizes(batch_size, val_size, pad, subset, num_workers, eval_batch_size)
        self.dataset, self.root, self.download, self.cache_dir = dataset, root, download, cache_dir
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_size, self.split_seed, self.subset = val_size, split_seed, subset
        self.augment, self.pad, self.pad_mode = augment, pad, pad_mode
        self.num_workers, self.loader = num_workers, loader
        if copies < 1:
            raise DataError(f"copies={copies} must be >= 1")
        self.copies = copies
        self.num_classes = DATASETS[dataset].num_classes
        self.crop_size = 28 if augment == "crop-28" else IMAGE_SIZE
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
        if root.is_dir() and not self._is_tree() and _has_loose_class_folders(root):
            raise DataError(f"{root} holds class folders but no train/ folder; "
                            f"expected {root}/train/<class>/*.jpg")

    def _cache_dir(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir(self.root_path)

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
        images, labels, self.classes = load_tree_split(split_dir, self._cache_dir(), classes, per_class)
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
            return CropFlip(28, 0, self.pad_mode, flip=True)  # crops inside the image: no padding
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
        augmentation = self.train_augmentation if train else None
        batch_size = self.batch_size if train else self.eval_batch_size
        if self._uses_device_loader():
            return self._device_loader(split, train, augmentation, batch_size, seed_offset)
        device = self._trainer_device()
        # Order, crops and flips from (seed + copy, epoch), whatever the worker count. The loader's
        # own generator seeds its workers, so making an iterator draws nothing from the global RNG,
        # which dropout uses and LitClassifier reseeds every epoch.
        seed = torch.initial_seed() + seed_offset
        sampler = EpochShuffle(len(split.labels), seed) if train else None
        return DeferredDataLoader(AugmentedImages(split, self.mean, self.std, augmentation), batch_size=batch_size,
                          sampler=sampler, drop_last=train, num_workers=self.num_workers,
                          generator=torch.Generator().manual_seed(seed),
                          persistent_workers=self.num_workers > 0,
                          pin_memory=device is not None and device.type == "cuda")

    def _device_loader(self, split: Split, train: bool, augmentation: Optional[CropFlip],
                       batch_size: int, seed_offset: int = 0) -> DeviceLoader:
        device = self._trainer_device() or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        attached = self.trainer is not None
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if attached else (0, 1)
        # torch.initial_seed() is the seed seed_everything set, identical on every rank, so all
        # ranks draw the same permutation and their shards stay disjoint.
        return DeviceLoader(split, batch_size, self.mean, self.std, augmentation, shuffle=train, drop_last=train,
                            seed=torch.initial_seed() + seed_offset, rank=rank, world_size=world_size, device=device)


def _has_loose_class_folders(root: Path) -> bool:
    """True when root/<class>/ holds images directly, the usual mistake of a tree without train/."""
    for folder in root.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            if _image_files(folder):
                return True
    return False
