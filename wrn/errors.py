"""Which exceptions are the user's to fix, and their one-line message."""

from __future__ import annotations

import re


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line_error(exc: BaseException) -> str | None:
    """A one-line message for errors caused by input (config, data, checkpoint, resources);
    None for anything else, which is a bug and keeps its traceback."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "CUDA out of memory: " + _first_line(exc) + " (lower data.batch_size)"
    if isinstance(exc, RuntimeError) and "Error(s) in loading state_dict" in str(exc):
        return _checkpoint_mismatch(str(exc))
    if isinstance(exc, (ValueError, FloatingPointError, FileNotFoundError, KeyError, TypeError)):
        return " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__name__ == "ArgumentError":  # jsonargparse / argparse config errors
        return " ".join(str(exc).split())
    return None


def _checkpoint_mismatch(message: str) -> str:
    shapes = re.search(r"size mismatch for ([\w.]+): copying a param with shape (\S+) from "
                       r"checkpoint, the shape in current model is (\S+)", message)
    detail = (f"{shapes.group(1)} is {shapes.group(2)} in the checkpoint but "
              f"{shapes.group(3)} in the model" if shapes else _first_line(message))
    return f"checkpoint was saved from a different architecture: {detail}"
