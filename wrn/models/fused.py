"""S independent networks trained as one: seeded single models fused into a copies=S net, and back.

Small CIFAR nets leave a GPU mostly idle; a copies=S network (grouped convs, see `blocks.py`) runs
S seeds in one kernel stream instead of S. Training it on S stacked batches with the *sum* of
the per-copy losses is the same computation as S separate runs: copy i's parameters only touch
copy i's images, so d(sum)/d(theta_i) = d(loss_i)/d(theta_i), and SGD with momentum, Nesterov and
weight decay is elementwise. What breaks the equivalence: anything that mixes copies, e.g.
clipping by the global gradient norm, or a learning-rate schedule driven by the summed loss.

Layout: every parameter and buffer of the fused net stacks the copies along dim 0 (conv output
channels, BN/PReLU channels, head rows), so copy i is rows [i*r, (i+1)*r) of each tensor.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from wrn.models.registry import build_model, model_config
from wrn.models.resnet import CifarResNet


def with_copies(model: CifarResNet, copies: int) -> CifarResNet:
    """A freshly initialised network of `model`'s architecture (its `config`) with `copies` copies."""
    return build_model(replace(model_config(model), copies=copies))


def _copy_rows(fused: CifarResNet, singles: Sequence[CifarResNet], into_fused: bool) -> None:
    """Copy every parameter and buffer between copy i's rows of `fused` and `singles[i]`."""
    fused_state = fused.state_dict()  # detached views: in-place copies write into the modules
    with torch.no_grad():
        for i, single in enumerate(singles):
            single_state = single.state_dict()
            if single_state.keys() != fused_state.keys():
                raise ValueError(f"model {i} has different parameters than the fused network")
            for key, whole in fused_state.items():
                part = single_state[key]
                if whole.dim() == 0:
                    # BN's num_batches_tracked: one counter for all copies. It only matters for
                    # momentum=None (cumulative averages), which these nets do not use.
                    (whole if into_fused else part).copy_(part if into_fused else whole)
                    continue
                rows = whole.shape[0] // len(singles)
                block = whole[i * rows:(i + 1) * rows]
                if block.numel() != part.numel():
                    raise ValueError(f"{key}: model {i} has shape {tuple(part.shape)}, the fused "
                                     f"network {tuple(whole.shape)} for {len(singles)} copies")
                # reshape: the fused head is a grouped 1x1 conv (rows, C, 1, 1), the single one a
                # Linear (rows, C); same numbers, same order.
                if into_fused:
                    block.copy_(part.reshape(block.shape))
                else:
                    part.copy_(block.reshape(part.shape))


def fuse(models: Sequence[CifarResNet]) -> CifarResNet:
    """One copies=S network whose copy i computes exactly what `models[i]` does (S = len(models)).

    The result is a plain `CifarResNet` on the first model's device and dtype, in train mode.
    """
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
    """(total, per_copy): per_copy[i] is copy i's mean cross-entropy over its batch (detached, for
    logging); total is their sum, so backward gives each copy the gradient of its own separate run.
    A mean over copies would scale every copy's gradient by 1/S, i.e. silently divide the lr."""
    if not isinstance(targets, Tensor):
        targets = stack_targets(targets)
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (N, S, classes) and targets (N, S); "
                         f"got {tuple(logits.shape)} and {tuple(targets.shape)}")
    # cross_entropy wants the class dim second: (N, classes, S) against (N, S).
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none",
                             label_smoothing=label_smoothing)
    per_copy = losses.mean(dim=0)
    return per_copy.sum(), per_copy.detach()
