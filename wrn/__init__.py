"""wrn: Wide ResNets against thin deep ResNets on CIFAR, from a name to a trade-off plot."""

__version__ = "0.1.0"

# The Python API, imported on first use so that `import wrn` (and `wrn --help`) stays fast.
_API = {"create_model": "wrn.models", "list_models": "wrn.models", "model_config": "wrn.models",
        "load_model": "wrn.load"}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'wrn' has no attribute {name!r}")
