"""wrn: Wide ResNets against thin deep ResNets on CIFAR, from a name to a trade-off plot."""

__version__ = "0.1.0"

# The Python API and the subpackages, imported on first use so that `import wrn` (and
# `wrn --help`) stays fast.
_API = {"create_model": "wrn.models", "list_models": "wrn.models", "model_config": "wrn.models",
        "published": "wrn.models", "load_model": "wrn.load"}
_SUBPACKAGES = ("models", "data", "report", "sweep", "rundir", "complexity")
__all__ = sorted([*_API, *_SUBPACKAGES])


def __getattr__(name: str):
    import importlib

    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"wrn.{name}")
    raise AttributeError(f"module 'wrn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
