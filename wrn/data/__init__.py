"""Data: the `DATASETS` table, image sources and cache, epoch-seeded loaders and `CIFARData`. Names load
on first use, so `from wrn.data import DATASETS` imports neither torch nor Lightning."""

import importlib

_HOMES = {  # exported name -> the module that defines it
    "DATASETS": "datasets", "DataError": "datasets", "DatasetFacts": "datasets", "IMAGE_SIZE": "datasets",
    "CropFlip": "augment", "eval_views": "augment", "normalize": "augment", "CIFARData": "datamodule",
    "AugmentedImages": "loaders", "DeviceLoader": "loaders", "StackedLoader": "loaders",
    "mix_seed": "sampling", "Split": "splits",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
