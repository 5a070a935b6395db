"""Trained networks back out of a run, for one's own code: `wrn.load_model(run_dir_or_checkpoint)`.

No Lightning needed: the checkpoint is read with `torch.load(weights_only=True)`, the architecture
from its `hyper_parameters` (the LightningModule's `model:` arguments), the weights from its
`state_dict` with the module's `net.` prefix stripped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from wrn.errors import checkpoint_load_error, one_line_error
from wrn.models import build_model, model_spec_from_config
from wrn.models.fused import unfuse
from wrn.models.resnet import CifarResNet

PREFIX = "net."
COMPILED = "_orig_mod."  # what torch.compile inserts into the keys of a compiled network


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint file as given; for a run directory its checkpoints/best.ckpt, else last.ckpt."""
    path = Path(path)
    if path.is_dir():
        for folder in (path / "checkpoints", path):
            for name in ("best.ckpt", "last.ckpt"):
                if (folder / name).is_file():
                    return folder / name
        raise ValueError(f"{path}: no checkpoints/best.ckpt or checkpoints/last.ckpt in this run "
                         "directory")
    if not path.exists():
        raise ValueError(f"{path}: no such run directory or checkpoint file")
    return path


def _read(file: Path) -> dict:
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable or refused: one line naming the file
        reason = checkpoint_load_error(exc) or _unreadable(exc)
        if reason is None:
            raise
        raise ValueError(f"{file}: {reason}") from None
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict)
            and isinstance(checkpoint.get("hyper_parameters"), dict)
            and "name" in checkpoint["hyper_parameters"]):
        raise ValueError(f"{file}: not a checkpoint written by `wrn fit` (no model "
                         "hyper_parameters and state_dict)")
    return checkpoint


def _unreadable(exc: Exception) -> str | None:
    if isinstance(exc, OSError):
        return f"cannot read it ({exc.strerror or exc})"
    if isinstance(exc, EOFError):
        return "checkpoint is empty or truncated"
    if isinstance(exc, RuntimeError):
        return f"checkpoint is damaged ({str(exc).splitlines()[0]})"
    return None


def _network_weights(state_dict: dict) -> dict:
    return {key[len(PREFIX):].replace(COMPILED, "", 1): value
            for key, value in state_dict.items() if key.startswith(PREFIX)}


def load_model(path: str | Path, copy: int | None = None) -> CifarResNet:
    """The trained network of a run directory (checkpoints/best.ckpt, else last.ckpt) or of a
    checkpoint file, as a plain `nn.Module` on the CPU in eval mode (`net.config`: its architecture).

    A fused run (model.copies = S > 1) holds S networks: `copy` (0 .. S-1) picks one, the network
    of seed `seed + copy`. Missing, damaged or foreign files raise one ValueError naming the path.
    """
    file = checkpoint_file(path)
    checkpoint = _read(file)
    hparams = checkpoint["hyper_parameters"]
    copies = hparams.get("copies") or 1
    if copies == 1 and copy not in (None, 0):
        raise ValueError(f"{file}: holds one network, not fused copies; copy={copy!r} is invalid")
    if copies > 1 and (copy is None or not 0 <= copy < copies):
        raise ValueError(f"{file}: holds {copies} fused networks (model.copies={copies}); "
                         f"pass copy=0..{copies - 1} to pick one" + ("" if copy is None else
                                                                      f", not copy={copy!r}"))
    try:
        config = model_spec_from_config(hparams).config()
        net = build_model(replace(config, copies=copies))
        net.load_state_dict(_network_weights(checkpoint["state_dict"]))
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{file}: {one_line_error(exc) or str(exc).splitlines()[0]}") from None
    return (unfuse(net)[copy] if copies > 1 else net).eval()
