"""Counting only: parameters and multiply-adds, three ways that must agree.

- fvcore `FlopCountAnalysis`: the figure the package reports (`flops`). fvcore counts one
  multiply-add as one flop, and adds small terms for BN and pooling.
- `torch.utils.flop_counter`: convs and matmuls only, reported in flops (2 per multiply-add);
  halved here so the three columns share one unit.
- the analytic formula beside the model (`CifarResNet.analytic_macs`): convs and linear only.

Parameters are also counted analytically from the config before anything is built
(`analytic_cost`): a model too large to build is refused with its count, and a slow one is
announced on stderr before it is built and traced.
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

from wrn.models import list_models, published, resolve_model
from wrn.models.resnet import analytic_cost

IMAGE_SHAPE = (3, 32, 32)  # CIFAR: every count is per image at this size
MAX_BUILD_BYTES = 4 * 2**30  # refused above this estimate unless forced: 4 GiB, ~1e9 parameters
# fvcore's trace holds about this much per residual unit (resnet-1202, 600 units: ~350 MB peak
# over the imports on a 2-core CPU).
TRACE_BYTES_PER_UNIT = 2**19
# Announced on stderr before building: past any of these, building and tracing takes seconds to
# minutes on a CPU (resnet-1202, 600 units: about 3 minutes on a busy 2-core CPU).
SLOW_UNITS, SLOW_PARAMS, SLOW_MACS = 200, 10**8, 10**10


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


def build_bytes(params: int, activation: int, units: int, copies: int = 1) -> int:
    """Estimated memory to build and count a network: float32 weights, a few live activation
    maps of one image per copy, and fvcore's trace of every unit."""
    return 4 * (params + 3 * activation * copies) + TRACE_BYTES_PER_UNIT * units


def count_model(name: str, image_size: int = IMAGE_SHAPE[1], force: bool = False,
                progress=None, **overrides) -> Count:
    """Count `name` (with overrides) three ways. The analytic count comes first: past
    MAX_BUILD_BYTES it raises ValueError (force=True builds anyway); a slow model is announced
    by calling `progress` with one line before it is built."""
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image size {image_size!r} is invalid; valid: a positive number of pixels")
    spec = resolve_model(name, **overrides)
    config = spec.config()
    cost = analytic_cost(config, image_size)
    units = 3 * config.units_per_stage
    memory = build_bytes(cost.params, cost.activation, units, config.copies)
    if memory > MAX_BUILD_BYTES and not force:
        raise ValueError(f"{spec.name} has {cost.params:,} parameters (analytic) and needs about "
                         f"{memory / 2**30:,.1f} GiB to build and count, over the "
                         f"{MAX_BUILD_BYTES / 2**30:.0f} GiB limit; pass --force to count it anyway")
    if progress and (units >= SLOW_UNITS or cost.params >= SLOW_PARAMS or cost.macs >= SLOW_MACS):
        progress(f"counting {spec.name}: {cost.params:,} parameters (analytic), {units:,} units, "
                 f"{cost.macs / 1e9:,.1f} G multiply-adds; building and tracing it is slow")
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


def expand_names(names: list[str]) -> list[str]:
    """Names as given; a shell-style pattern (wrn-28*) stands for the named models it matches."""
    expanded = []
    for name in names:
        if any(c in name for c in "*?["):
            matches = list_models(name)
            if not matches:
                raise ValueError(f"no named model matches {name!r}; see wrn.models.list_models()")
            expanded += matches
        else:
            expanded.append(name)
    return expanded


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
    parser.add_argument("names", nargs="+",
                        help="model names, e.g. wrn-28-10 resnet-110, or patterns of the named "
                             "models, e.g. 'wrn-28*'")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--image-size", type=int, default=IMAGE_SHAPE[1], help="pixels per side")
    parser.add_argument("--force", action="store_true",
                        help=f"count models estimated to need over {MAX_BUILD_BYTES / 2**30:.0f} "
                             "GiB to build")
    args = parser.parse_args(argv)
    if args.image_size < 1:
        print(f"error: --image-size {args.image_size} is invalid; valid: a positive number of pixels",
              file=sys.stderr)
        return 2
    try:
        counts = [count_model(name, args.image_size, force=args.force, progress=_announce)
                  for name in expand_names(args.names)]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps([asdict(c) for c in counts], indent=2))
    else:
        print(format_table(counts) if args.format == "table" else format_csv(counts))
    return 0


def _announce(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
