"""The decoded-image cache: an image-folder split as .npy arrays beside a JSON sidecar of their shapes and
checksums, in the user cache or `data.cache_dir`, never in the data folder (often shared or read-only)."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from wrn.data import sources
from wrn.data.datasets import DataError
from wrn.files import atomic_file, atomic_write_json

CACHE_VERSION = 3  # bump when the cache layout or decoding changes, so old caches are ignored
CACHED_ARRAYS = ("images", "labels")  # one .npy file each, beside one JSON sidecar


def default_cache_dir() -> Path:
    """The user cache: `$XDG_CACHE_HOME/wrn/decoded`, or `~/.cache/wrn/decoded` when it is unset."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    base_dir = Path(base) if os.path.isabs(base) else Path("~/.cache").expanduser()  # the XDG rule
    return base_dir / "wrn" / "decoded"


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """np.save through `atomic_file`: readers never see half an array."""
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
    paths, labels, classes = sources.list_image_tree(split_dir, classes, per_class)
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
    images = sources.decode_images(paths, progress)
    write_cache(stem, images, labels)
    return images, labels, classes
