"""`wrn.load_model(run_dir_or_checkpoint)`: a trained network back, as a plain nn.Module, no Lightning."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

from wrn import rundir
from wrn.errors import one_line_error
from wrn.models import build_model, model_spec_from_config
from wrn.models.fused import unfuse
from wrn.models.resnet import CifarResNet

PREFIX = "net."  # the LightningModule's attribute holding the network
COMPILED = "_orig_mod."  # what torch.compile inserts into the keys of a compiled network


def network_from_checkpoint(file: Path) -> tuple[CifarResNet, dict]:
    """(the network, fused when the run was, with the checkpoint's weights; the checkpoint)."""
    checkpoint = rundir.load_checkpoint(file)
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict)
            and isinstance(checkpoint.get("hyper_parameters"), dict)
            and "name" in checkpoint["hyper_parameters"]):
        raise ValueError(f"{file}: not a checkpoint written by `wrn fit` (no model "
                         "hyper_parameters and state_dict)")
    hparams = checkpoint["hyper_parameters"]
    weights = {key[len(PREFIX):].replace(COMPILED, "", 1): value
               for key, value in checkpoint["state_dict"].items() if key.startswith(PREFIX)}
    try:
        config = model_spec_from_config(hparams).config()
        net = build_model(replace(config, copies=hparams.get("copies") or 1))
        net.load_state_dict(weights)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{file}: {one_line_error(exc) or str(exc).splitlines()[0]}") from None
    return net, checkpoint


def load_model(path: str | Path, copy: int | None = None) -> CifarResNet:
    """The trained network of a run folder (its best checkpoint, else its last) or of a checkpoint
    file, on the CPU in eval mode, taking float images in [0, 1] (docs/models.md). A fused run holds
    S networks: `copy` (0 .. S-1) picks the one of seed `seed + copy`."""
    file = rundir.trained_checkpoint(path)
    net, checkpoint = network_from_checkpoint(file)
    copies = net.config.copies
    if copies == 1 and copy not in (None, 0):
        raise ValueError(f"{file}: holds one network, not fused copies; copy={copy!r} is invalid")
    if copies > 1 and (copy is None or not 0 <= copy < copies):
        raise ValueError(f"{file}: holds {copies} fused networks (model.copies={copies}); "
                         f"pass copy=0..{copies - 1} to pick one" + ("" if copy is None else
                                                                      f", not copy={copy!r}"))
    net = (unfuse(net)[copy] if copies > 1 else net).eval()
    stats = checkpoint.get("normalization")
    if stats is None:
        warnings.warn(f"{file} holds no input normalisation (saved by an older wrn): its network takes "
                      "images normalised with the training split's per-channel mean and std", stacklevel=2)
        return net
    try:
        return net.normalize_inputs(stats["mean"], stats["std"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{file}: damaged 'normalization' entry ({type(exc).__name__}: {exc})") from None
