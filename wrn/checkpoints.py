"""Checkpoint files: written to a temporary name and renamed, read only with weights_only=True.

A run keeps `checkpoints/last.ckpt` (every epoch), `checkpoints/best.ckpt` (best val_acc) and
`checkpoints/previous-last.ckpt` (the last.ckpt before the latest one), so a resume always finds a
whole checkpoint: a write that fails (a full disk) leaves the previous file as it was, and a
last.ckpt damaged some other way falls back to the previous one.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from wrn.errors import checkpoint_load_error
from wrn.runs import atomic_file

CHECKPOINTS_DIR = "checkpoints"
LAST, PREVIOUS_LAST = "last.ckpt", "previous-last.ckpt"


def checkpoints_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def save_atomically(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside `path`, fsync, rename. A last.ckpt being replaced is
    kept as previous-last.ckpt. A full disk is an OSError(ENOSPC) naming the checkpoint's path;
    whatever fails, the temporary file goes and the files already there stay whole."""
    path = Path(path)
    previous = path.with_name(PREVIOUS_LAST) if path.name == LAST else None
    try:
        with atomic_file(path, keep_previous=previous) as f:
            torch.save(checkpoint, f)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None  # the path
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint I/O, saving through `save_atomically`; loading stays
    Lightning's (the CLI passes weights_only=True)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        save_atomically(checkpoint, path)


def unreadable_reason(path: str | os.PathLike) -> Optional[str]:
    """Why a checkpoint file cannot be loaded (truncated, damaged, empty), or None when it loads.
    A file the safe loader refuses (pickled code) raises: that is never silently skipped."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as exc:
        message = checkpoint_load_error(exc)
        return message or " ".join(str(exc).split()) or type(exc).__name__
    return None


def resolve_last(run_dir: str | os.PathLike) -> Optional[str]:
    """The checkpoint `--ckpt_path last` resumes from: last.ckpt; when that is unreadable, with a
    warning, previous-last.ckpt, or None (start over) when neither loads. An unreadable file is
    renamed damaged-<name> (kept, never overwritten by the resumed run). 'last' itself when the
    run has no checkpoint yet (Lightning then starts afresh)."""
    folder = checkpoints_dir(run_dir)
    candidates = [path for path in (folder / LAST, folder / PREVIOUS_LAST) if path.exists()]
    if not candidates:
        return "last"
    for index, path in enumerate(candidates):
        reason = unreadable_reason(path)
        if reason is None:
            return str(path)
        following = f"resuming from {candidates[index + 1].name}" if index + 1 < len(candidates) \
            else "no whole checkpoint left: starting over"
        damaged = path.with_name(f"damaged-{path.name}")
        os.replace(path, damaged)
        warnings.warn(f"{path} is unreadable ({reason}), kept as {damaged.name}; {following}",
                      stacklevel=2)
    return None
