"""`wrn.load_model(run_dir_or_checkpoint)`: a trained network back, as a plain nn.Module, no Lightning."""

from __future__ import annotations

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
        net = build_model(replace(model_spec_from_config(hparams).config(), copies=hparams.get("copies") or 1))
        net.load_state_dict(weights)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{file}: {one_line_error(exc) or str(exc).splitlines()[0]}") from None
    return net, checkpoint


def load_model(path: str | Path, copy: int | None = None) -> CifarResNet:
    """The trained network of a run folder (its best checkpoint, else its last) or of a checkpoint
    file, on the CPU in eval mode; `net.config` is its architecture. A fused run holds S networks:
    `copy` (0 .. S-1) picks the one of seed `seed + copy`. Missing, damaged or foreign files raise
    one ValueError naming the path."""
    file = rundir.trained_checkpoint(path)
    net, checkpoint = network_from_checkpoint(file)
    copies = net.config.copies
    if copies == 1 and copy not in (None, 0):
        raise ValueError(f"{file}: holds one network, not fused copies; copy={copy!r} is invalid")
    if copies > 1 and (copy is None or not 0 <= copy < copies):
        raise ValueError(f"{file}: holds {copies} fused networks (model.copies={copies}); "
                         f"pass copy=0..{copies - 1} to pick one" + ("" if copy is None else
                                                                      f", not copy={copy!r}"))
    return (unfuse(net)[copy] if copies > 1 else net).eval()
