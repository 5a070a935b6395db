"""Where images come from: an image-folder tree `root/<split>/<class>/*.jpg|jpeg|png`, listed and
decoded here, or torchvision's own dataset files (arrays already). A decoded tree is cached as .npy
arrays beside a JSON sidecar of their shapes and checksums, in the user cache or `data.cache_dir`,
never in the data folder (often shared or read-only)."""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import socket
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from stat import S_ISREG
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from wrn.data.datasets import DATASETS, IMAGE_SIZE, DataError
from wrn.files import atomic_file, atomic_write_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DECODE_CHUNK = 1000  # images per worker task: large enough to amortise inter-process transfer
SERIAL_DECODE_BELOW = 2000  # images; fewer decode faster in-process than a pool starts
DOWNLOAD_TIMEOUT_S = 10.0  # seconds a silent download socket may wait before giving up
ROOT_HINT = "pass --data.root a local folder holding torchvision's files or a train/<class>/ image tree"
CACHE_VERSION = 3  # bump when the cache layout or decoding changes, so old caches are ignored
CACHED_ARRAYS = ("images", "labels")  # one .npy file each, beside one JSON sidecar


def list_image_tree(split_dir: Path, classes: Optional[list[str]] = None,
                    per_class: Optional[int] = None) -> tuple[list[str], np.ndarray, list[str]]:
    """(image paths, int64 labels, class names) of `split_dir/<class>/*`, files in sorted order.
    `classes` fixes the label order (the train split's, for test); `per_class` keeps the first N."""
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DataError(f"{split_dir} has no class folders (expected {split_dir}/<class>/*.jpg)")
    extra = sorted(set(found) - set(classes or found))
    if extra:
        raise DataError(f"{split_dir} has class folders {extra} that the train split lacks")
    paths, labels = [], []
    for label, name in enumerate(classes or found):
        folder = split_dir / name
        files = image_files(folder)[:per_class] if folder.is_dir() else []
        if not files and classes is None:
            raise DataError(f"class folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        paths += [str(folder / f) for f in files]
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64), classes or found


def image_files(folder: Path) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))


@functools.lru_cache(maxsize=64)  # a sweep estimates its runs every second: each tree listed once
def tree_count(folder: Path, per_class: Optional[int] = None) -> Optional[int]:
    """Images under folder/<class>/, at most per_class each, without decoding any; None when
    there is no such tree."""
    if not folder.is_dir():
        return None
    counts = [len(image_files(entry.path)) for entry in os.scandir(folder) if entry.is_dir()]
    return sum(count if per_class is None else min(count, per_class) for count in counts) or None


def train_images(dataset: str, root: Optional[Path], subset: Optional[int], num_classes: int) -> int:
    """Training images a run on `root` reads, before decoding any: counted in an image tree, else
    the data set's own size (torchvision's files, or a download to come); `subset` per class."""
    counted = tree_count(root / "train", subset) if root is not None else None
    if counted is not None:
        return counted
    total = DATASETS.get(dataset, DATASETS["cifar10"]).train_images
    return total if subset is None else min(total, subset * num_classes)


def has_loose_class_folders(root: Path) -> bool:
    """True when root/<class>/ holds images directly, the usual mistake of a tree without train/."""
    return any(f.is_dir() and not f.name.startswith(".") and image_files(f) for f in root.iterdir())


def _rgb(image: Image.Image) -> Image.Image:
    """RGB, 16-bit grey (modes I;16* and I) scaled to 8 bits rather than clipped to white."""
    if image.mode.startswith("I"):
        scaled = np.clip(np.rint(np.asarray(image, dtype=np.float64) / 257), 0, 255).astype(np.uint8)
        image = Image.fromarray(scaled)
    return image.convert("RGB")


def decode_image(path: str | Path, resize: bool = False) -> np.ndarray:
    """One image file as uint8 (32, 32, 3) RGB: a 32x32 image, or (`resize`) one of any size, its
    shorter side resized to 32 pixels and centre-cropped. DataError naming the file when it is not a
    regular file (a FIFO would hang), is unreadable, a decompression bomb or (without `resize`) not 32x32."""
    try:
        if not S_ISREG(os.stat(path).st_mode):
            raise DataError(f"image {path} is not a regular file")
        with Image.open(path) as image:
            if not resize and image.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise DataError(f"image {path} is {image.size[0]}x{image.size[1]} pixels, "
                                f"expected {IMAGE_SIZE}x{IMAGE_SIZE}")
            image = _rgb(image)
            if resize:
                scale = IMAGE_SIZE / min(image.size)
                width, height = (max(IMAGE_SIZE, round(side * scale)) for side in image.size)
                left, top = (width - IMAGE_SIZE) // 2, (height - IMAGE_SIZE) // 2
                image = image.resize((width, height), Image.Resampling.BICUBIC).crop(
                    (left, top, left + IMAGE_SIZE, top + IMAGE_SIZE))
            return np.array(image)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:  # PIL raises all these
        raise DataError(f"cannot read image {path}: {exc}") from None


def _decode_chunk(paths: Sequence[str]) -> np.ndarray:
    """uint8 (N, 3, 32, 32), transposed in the workers so that loading the cache needs no slow transpose."""
    return np.ascontiguousarray(np.stack([decode_image(p) for p in paths]).transpose(0, 3, 1, 2))


@contextmanager
def _chunk_mapper(workers: int) -> Iterator[Callable]:
    """Plain `map`, or an ordered process-pool map; PIL decoding holds the GIL, so threads would
    not help. Forked where possible: spawned workers would re-import torch first."""
    if workers <= 1:
        yield map
        return
    fork = "fork" in multiprocessing.get_all_start_methods()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork") if fork else None)
    try:
        yield pool.map
    finally:
        pool.shutdown(cancel_futures=True)  # a corrupt image stops the decode at once


def decode_images(paths: Sequence[str], progress: bool = True) -> np.ndarray:
    from rich.console import Console
    from rich.progress import Progress
    chunks = [paths[i:i + DECODE_CHUNK] for i in range(0, len(paths), DECODE_CHUNK)]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = 1 if len(paths) < SERIAL_DECODE_BELOW else min(cpus, len(chunks))
    parts = [np.empty((0, 3, IMAGE_SIZE, IMAGE_SIZE), np.uint8)]  # so that no images concatenate
    # No refresh thread: the decoding pool forks, and forking beside a running thread is unsafe.
    bar = Progress(console=Console(stderr=True), transient=True, auto_refresh=False, disable=not progress)
    with bar, _chunk_mapper(workers) as mapper:
        task = bar.add_task("decoding images", total=len(paths))
        for part in mapper(_decode_chunk, chunks):
            parts.append(part)
            bar.update(task, advance=len(part), refresh=True)
    return np.concatenate(parts)


def load_torchvision_split(dataset: str, root: Path, train: bool,
                           download: bool) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NCHW images, int64 labels) from torchvision's files under `root`, downloading if allowed."""
    import torchvision  # only this source needs it
    facts = DATASETS[dataset]
    kind = getattr(torchvision.datasets, facts.torchvision_name)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # an offline machine must fail fast, not hang
    try:
        source = kind(str(root), download=download, **facts.torchvision_split(train))
    except (RuntimeError, OSError, ImportError, ValueError) as exc:  # not found, offline, corrupt, no scipy
        reason = f"{'download failed' if download else 'download=False'}: {type(exc).__name__}: {exc}"
        raise DataError(f"no {dataset} data in {root} ({reason}); {ROOT_HINT}") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
    images = np.asarray(source.data, dtype=np.uint8)
    if images.shape[-1] == 3:  # CIFAR stores NHWC, SVHN NCHW already
        images = images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images), np.asarray(getattr(source, facts.labels_attribute), dtype=np.int64)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "")
    base_dir = Path(base) if os.path.isabs(base) else Path("~/.cache").expanduser()  # the XDG rule
    return base_dir / "wrn" / "decoded"


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as f:
        np.save(f, array, allow_pickle=False)


class CacheDamaged(Exception):
    def __init__(self, path: Path, reason: str):
        super().__init__(f"cache file {path} is damaged ({reason}); rebuilding it")


def _load_checked(path: Path, record: dict) -> np.ndarray:
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
        return tuple(_load_checked(Path(f"{stem}.{name}.npy"), records[name]) for name in CACHED_ARRAYS)
    except CacheDamaged as exc:
        warnings.warn(str(exc), stacklevel=2)
        return None


def write_cache(stem: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Arrays first, sidecar last: the sidecar is the commit mark a reader trusts."""
    try:
        records = {}
        for name, array in zip(CACHED_ARRAYS, (images, labels)):
            path = Path(f"{stem}.{name}.npy")
            atomic_save_npy(path, array)
            records[name] = {"file": path.name, "shape": list(array.shape), "dtype": str(array.dtype),
                             "crc32": zlib.crc32(np.ascontiguousarray(array))}
        atomic_write_json(f"{stem}.json", {"version": CACHE_VERSION, "count": len(labels), "arrays": records})
    except OSError as exc:
        warnings.warn(f"could not write the image cache {stem}.* ({exc}); the images will be decoded again")


def load_tree_split(split_dir: Path, cache_dir: Path, classes: Optional[list[str]] = None,
                    per_class: Optional[int] = None,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 NCHW images, labels, classes) of an image-folder split, from the cache when it is valid."""
    paths, labels, classes = list_image_tree(split_dir, classes, per_class)
    # The entry's name hashes all the arrays depend on: the folder, each file's size and mtime (so
    # edited images invalidate it), the label order and the subset.
    key = hashlib.sha1(f"{CACHE_VERSION}|{split_dir.resolve()}|{list(classes)}|{per_class}".encode())
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError as exc:  # a link loop, a dangling link, no permission
            raise DataError(f"cannot read image {path}: {exc.strerror or exc}") from None
        key.update(f"|{os.path.relpath(path, split_dir)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    stem = cache_dir / f"{split_dir.parent.name}-{split_dir.name}-{key.hexdigest()[:16]}"
    if (cached := read_cache(stem)) is not None:
        return (*cached, classes)
    images = decode_images(paths, progress)
    write_cache(stem, images, labels)
    return images, labels, classes
