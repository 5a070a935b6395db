"""Which exceptions are the user's to fix, and their one-line message."""

from __future__ import annotations

import errno
import pickle
import re


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line_error(exc: BaseException) -> str | None:
    """A one-line message for errors caused by input (config, data, checkpoint, resources);
    None for anything else, which is a bug and keeps its traceback."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        reason = _first_line(exc)  # torch's own message already starts "CUDA out of memory."
        prefix = "" if reason.startswith("CUDA out of memory") else "CUDA out of memory: "
        return prefix + reason + " (lower data.batch_size)"
    if isinstance(exc, RuntimeError) and "Error(s) in loading state_dict" in str(exc):
        return _checkpoint_mismatch(str(exc))
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # a full disk, with the path
        return f"{exc.strerror}" + (f" (writing {exc.filename})" if exc.filename else "")
    unreadable = checkpoint_load_error(exc)
    if unreadable is not None:
        return unreadable
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


def checkpoint_load_error(exc: BaseException) -> str | None:
    """One line for a checkpoint torch.load(weights_only=True) refused (pickled code or objects,
    or not a checkpoint at all) or could not read (truncated, damaged); None for anything else."""
    if isinstance(exc, pickle.UnpicklingError):
        text = str(exc)
        detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
        reason = next((line.strip() for line in detail.splitlines() if line.strip()), "unpickling failed")
        return (f"checkpoint refused by the safe loader (torch.load weights_only=True: "
                f"{reason.split('. ')[0].rstrip('.')}); nothing in it was unpickled")
    if isinstance(exc, RuntimeError) and "PytorchStreamReader failed" in str(exc):
        return f"checkpoint is truncated or damaged ({str(exc).split('. ')[0]})"
    return None
