"""Counting only: parameters and multiply-adds, three ways that must agree.

- fvcore `FlopCountAnalysis`: the figure the package reports (`flops`). fvcore counts one
  multiply-add as one flop, and adds small terms for BN and pooling.
- `torch.utils.flop_counter`: convs and matmuls only, reported in flops (2 per multiply-add);
  halved here so the three columns share one unit.
- the analytic formula beside the model (`CifarResNet.analytic_macs`): convs and linear only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from wrn.models import published, resolve_model

IMAGE_SHAPE = (3, 32, 32)  # CIFAR: every count is per image at this size


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_weights(model: nn.Module) -> int:
    """Conv and linear weights only: the convention of some published figures (see Published)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def _example_input(model: nn.Module, image_size: int) -> torch.Tensor:
    copies = getattr(model, "copies", 1)
    return torch.zeros(1, IMAGE_SHAPE[0] * copies, image_size, image_size)


def fvcore_macs(model: nn.Module, image_size: int = IMAGE_SHAPE[1]) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore scripts helpers with torch.jit
        from fvcore.nn import FlopCountAnalysis

    # fvcore logs a warning per unsupported op (e.g. add_) on every call; those ops are
    # elementwise and negligible, so the warnings are switched off rather than shown per model.
    logging.getLogger("fvcore.nn.jit_handles").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(model.eval(), _example_input(model, image_size))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return int(analysis.total())


def torch_counter_macs(model: nn.Module, image_size: int = IMAGE_SHAPE[1]) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(_example_input(model, image_size))
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class Count:
    name: str
    family: str
    params: int
    weights: int
    flops: int  # fvcore multiply-adds per 32x32 image
    torch_macs: int
    analytic_macs: int
    published_params_m: float | None
    published_macs_g: float | None
    published_counting: str | None


def count_model(name: str, image_size: int = IMAGE_SHAPE[1], **overrides) -> Count:
    spec = resolve_model(name, **overrides)
    model = spec.build()
    paper = published(spec.name) if not overrides else None
    return Count(
        name=spec.name, family=spec.family, params=count_params(model),
        weights=count_weights(model), flops=fvcore_macs(model, image_size),
        torch_macs=torch_counter_macs(model, image_size),
        analytic_macs=model.analytic_macs(image_size),
        published_params_m=paper.params_m if paper else None,
        published_macs_g=paper.macs_g if paper else None,
        published_counting=paper.counting if paper else None)


def _fmt(value: float | None, pattern: str) -> str:
    return "–" if value is None else format(value, pattern)


TABLE_COLUMNS = ("model", "params M", "paper M", "MACs fvcore G", "MACs torch G",
                 "MACs analytic G", "paper G")


def format_table(counts: list[Count]) -> str:
    rows = [TABLE_COLUMNS]
    for c in counts:
        paper_params = _fmt(c.published_params_m, ".2f" if (c.published_params_m or 1) < 1 else ".1f")
        if c.published_counting == "weights":
            paper_params += "*"
        rows.append((c.name, f"{c.params / 1e6:.3f}", paper_params, f"{c.flops / 1e9:.3f}",
                     f"{c.torch_macs / 1e9:.3f}", f"{c.analytic_macs / 1e9:.3f}",
                     _fmt(c.published_macs_g, ".3g")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("MACs: multiply-adds per 3x32x32 image; fvcore counts one multiply-add as one "
                 "flop and adds BN/pool terms, torch and analytic count convs + linear only.")
    if any(c.published_counting == "weights" for c in counts):
        lines.append("* paper counts conv + linear weights only; ours "
                     + ", ".join(f"{c.name} {c.weights / 1e6:.2f}M" for c in counts
                                 if c.published_counting == "weights"))
    return "\n".join(lines)


def format_csv(counts: list[Count]) -> str:
    fields = list(asdict(counts[0]))
    lines = [",".join(fields)]
    lines += [",".join("" if v is None else str(v) for v in asdict(c).values()) for c in counts]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wrn count",
        description="Parameters and multiply-adds per 3x32x32 image (fvcore counts one "
                    "multiply-add as one flop), cross-checked by torch's counter and the "
                    "analytic conv+linear formula, beside the figures the papers print.")
    parser.add_argument("names", nargs="+", help="model names, e.g. wrn-28-10 resnet-110")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--image-size", type=int, default=IMAGE_SHAPE[1], help="pixels per side")
    args = parser.parse_args(argv)
    try:
        counts = [count_model(name, args.image_size) for name in args.names]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps([asdict(c) for c in counts], indent=2))
    else:
        print(format_table(counts) if args.format == "table" else format_csv(counts))
    return 0
