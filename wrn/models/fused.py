"""S independent networks trained as one: single models fused into a copies=S net (grouped convs), and back.
Copy i is rows [i*r, (i+1)*r) of every parameter and buffer and only ever sees copy i's images. Trained on S
stacked batches with the *sum* of the per-copy losses, it computes exactly what S separate runs do, as SGD
(momentum, weight decay) is elementwise; what mixes copies (clipping by the global norm) breaks this."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from wrn.models.registry import build_model, model_config
from wrn.models.resnet import CifarResNet


def with_copies(model: CifarResNet, copies: int) -> CifarResNet:
    return build_model(replace(model_config(model), copies=copies))


def _copy_rows(fused: CifarResNet, singles: Sequence[CifarResNet], into_fused: bool) -> None:
    fused_state = fused.state_dict()  # detached views: in-place copies write into the modules
    with torch.no_grad():
        for i, single in enumerate(singles):
            single_state = single.state_dict()
            if single_state.keys() != fused_state.keys():
                raise ValueError(f"model {i} has different parameters than the fused network")
            for key, whole in fused_state.items():
                part = single_state[key]
                # BN's num_batches_tracked (0-dim) is one counter for all copies; it only matters
                # for momentum=None, which these nets do not use.
                block = whole.chunk(len(singles))[i] if whole.dim() else whole
                if block.numel() != part.numel():
                    raise ValueError(f"{key}: model {i} has shape {tuple(part.shape)}, the fused "
                                     f"network {tuple(whole.shape)} for {len(singles)} copies")
                # The fused head is a grouped 1x1 conv, (rows, C, 1, 1); the single one a Linear, (rows, C).
                source, target = (part, block) if into_fused else (block, part)
                target.copy_(source.reshape(target.shape))


def fuse(models: Sequence[CifarResNet]) -> CifarResNet:
    """One copies=S network whose copy i computes exactly what `models[i]` does, on the first
    model's device and dtype, in train mode."""
    if not models:
        raise ValueError("fuse needs at least one model")
    if any(m.copies != 1 for m in models):
        raise ValueError("fuse takes single networks (copies=1); unfuse a fused one first")
    first = next(models[0].parameters())
    fused = with_copies(models[0], len(models)).to(device=first.device, dtype=first.dtype)
    _copy_rows(fused, models, into_fused=True)
    return fused


def unfuse(fused: CifarResNet) -> list[CifarResNet]:
    """The S single networks inside a copies=S network: per-seed checkpoints and evaluation."""
    first = next(fused.parameters())
    singles = [with_copies(fused, 1).to(device=first.device, dtype=first.dtype)
               for _ in range(fused.copies)]
    _copy_rows(fused, singles, into_fused=False)
    return singles


def stack_batches(batches: Sequence[Tensor]) -> Tensor:
    """S batches (N, C, H, W) -> (N, S*C, H, W); image n of copy i is channels [i*C, (i+1)*C)."""
    shapes = {tuple(b.shape) for b in batches}
    if len(shapes) != 1:
        raise ValueError(f"stacked batches must share one shape; got {sorted(shapes)}")
    return torch.cat(list(batches), dim=1)


def stack_targets(targets: Sequence[Tensor]) -> Tensor:
    """S label vectors (N,) -> (N, S), the layout of the fused logits (N, S, classes)."""
    return torch.stack(list(targets), dim=1)


def fused_loss(logits: Tensor, targets: Tensor | Sequence[Tensor],
               label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
    """(total, per_copy): per_copy[i] is copy i's mean cross-entropy (detached, for logging);
    total is their sum, so each copy gets the gradient of its own run (a mean would divide the lr by S)."""
    if not isinstance(targets, Tensor):
        targets = stack_targets(targets)
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (N, S, classes) and targets (N, S); "
                         f"got {tuple(logits.shape)} and {tuple(targets.shape)}")
    # cross_entropy wants the class dim second: (N, classes, S) against (N, S).
    per_copy = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none",
                               label_smoothing=label_smoothing).mean(dim=0)
    return per_copy.sum(), per_copy.detach()
