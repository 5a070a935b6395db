"""Data: the `DATASETS` table, image sources and cache, epoch-seeded loaders and `CIFARData`. Names load
on first use, so `from wrn.data import DATASETS` imports neither torch nor Lightning."""

import importlib

_HOMES = {name: module for module, names in (  # exported name -> the module that defines it
    ("datasets", "DATASETS DataError DatasetFacts IMAGE_SIZE"), ("augment", "CropFlip eval_views normalize"),
    ("datamodule", "CIFARData"),
    ("loaders", "AugmentedImages DeviceLoader Split StackedLoader mix_seed"),
) for name in names.split()}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
