"""`wrn count`: parameters and multiply-adds by fvcore, torch's flop counter and the analytic
formula (docs/models.md). The analytic count comes first: a model too large to build is refused."""

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
from wrn.report.text import DASH, render_table

IMAGE_SHAPE = (3, 32, 32)  # CIFAR: every count is per image at this size
MAX_BUILD_BYTES = 4 * 2**30  # refused above this estimate unless forced: 4 GiB, ~1e9 parameters
TRACE_BYTES_PER_UNIT = 2**19  # fvcore's trace per residual unit (resnet-1202: ~350 MB peak)
SLOW_UNITS, SLOW_PARAMS, SLOW_MACS = 200, 10**8, 10**10  # past any: announced, minutes on a CPU


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_weights(model: nn.Module) -> int:
    """Conv and linear weights only: the convention of some published figures (see Published)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def _example_input(model: nn.Module, image_size: int) -> torch.Tensor:
    return torch.zeros(1, IMAGE_SHAPE[0] * getattr(model, "copies", 1), image_size, image_size)


def fvcore_macs(model: nn.Module, image_size: int = IMAGE_SHAPE[1]) -> int:
    # Quiet fvcore: FutureWarnings from its torch.jit scripting, a warning per negligible elementwise op.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis
        logging.getLogger("fvcore.nn.jit_handles").setLevel(logging.ERROR)
        analysis = FlopCountAnalysis(model.eval(), _example_input(model, image_size))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
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
    macs: int  # fvcore multiply-adds per 32x32 image
    torch_macs: int
    analytic_macs: int
    published_params_m: float | None = None
    published_macs_g: float | None = None
    published_counting: str | None = None


def count_model(name: str, image_size: int = IMAGE_SHAPE[1], force: bool = False,
                progress=None, **overrides) -> Count:
    """Count `name` (with overrides) three ways. Past MAX_BUILD_BYTES, by the analytic count, it raises
    ValueError unless `force`; a slow model is announced by calling `progress` with one line."""
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image size {image_size!r} is invalid; valid: a positive number of pixels")
    spec = resolve_model(name, **overrides)
    config = spec.config()
    cost = analytic_cost(config, image_size)
    units = 3 * config.units_per_stage
    # float32 weights, a few live activation maps of one image per copy, and fvcore's trace
    memory = 4 * (cost.params + 3 * cost.activation * config.copies) + TRACE_BYTES_PER_UNIT * units
    if memory > MAX_BUILD_BYTES and not force:
        raise ValueError(f"{spec.name} has {cost.params:,} parameters (analytic) and needs about "
                         f"{memory / 2**30:,.1f} GiB to build and count, over the "
                         f"{MAX_BUILD_BYTES / 2**30:.0f} GiB limit; pass --force to count it anyway")
    if progress and (units >= SLOW_UNITS or cost.params >= SLOW_PARAMS or cost.macs >= SLOW_MACS):
        progress(f"counting {spec.name}: {cost.params:,} parameters (analytic), {units:,} units, "
                 f"{cost.macs / 1e9:,.1f} G multiply-adds; building and tracing it is slow")
    model = spec.build()
    paper = published(spec.name) if not overrides else None
    figures = (paper.params_m, paper.macs_g, paper.counting) if paper else ()
    return Count(spec.name, spec.family, count_params(model), count_weights(model),
                 fvcore_macs(model, image_size), torch_counter_macs(model, image_size), cost.macs, *figures)


def expand_names(names: list[str]) -> list[str]:
    """Names as given; a shell-style pattern (wrn-28*) stands for the named models it matches."""
    expanded = []
    for name in names:
        matches = list_models(name) if any(c in name for c in "*?[") else [name]
        if not matches:
            raise ValueError(f"no named model matches {name!r}; see wrn.models.list_models()")
        expanded += matches
    return expanded


def format_table(counts: list[Count]) -> str:
    columns = ("model", "params M", "paper M", "MACs fvcore G", "MACs torch G", "MACs analytic G", "paper G")
    rows = []
    for c in counts:
        paper_m, star = c.published_params_m, "*" if c.published_counting == "weights" else ""
        paper_params = DASH if paper_m is None else f"{paper_m:.{2 if paper_m < 1 else 1}f}{star}"
        rows.append((c.name, f"{c.params / 1e6:.3f}", paper_params, f"{c.macs / 1e9:.3f}",
                     f"{c.torch_macs / 1e9:.3f}", f"{c.analytic_macs / 1e9:.3f}",
                     DASH if c.published_macs_g is None else format(c.published_macs_g, ".3g")))
    lines = [render_table(columns, rows, ["left"] + ["right"] * (len(columns) - 1)),
             "MACs: multiply-adds per 3x32x32 image; fvcore counts one multiply-add as one "
             "flop and adds BN/pool terms, torch and analytic count convs + linear only."]
    weights = [f"{c.name} {c.weights / 1e6:.2f}M" for c in counts if c.published_counting == "weights"]
    if weights:
        lines.append("* paper counts conv + linear weights only; ours " + ", ".join(weights))
    return "\n".join(lines)


def format_csv(counts: list[Count]) -> str:
    lines = [",".join(asdict(counts[0]))]
    lines += [",".join("" if v is None else str(v) for v in asdict(c).values()) for c in counts]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wrn count", description=(
        "Parameters and multiply-adds per 3x32x32 image (fvcore counts one multiply-add as one flop), "
        "cross-checked by torch's counter and the analytic conv+linear formula, beside the figures "
        "the papers print."))
    parser.add_argument("names", nargs="+", help="model names, e.g. wrn-28-10 resnet-110, or patterns of "
                                                 "the named models, e.g. 'wrn-28*'")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--image-size", type=int, default=IMAGE_SHAPE[1], help="pixels per side")
    parser.add_argument("--force", action="store_true",
                        help=f"count models estimated to need over {MAX_BUILD_BYTES / 2**30:.0f} "
                             "GiB to build")
    args = parser.parse_args(argv)
    try:
        if args.image_size < 1:
            raise ValueError(f"--image-size {args.image_size} is invalid; valid: a positive number of pixels")
        counts = [count_model(name, args.image_size, force=args.force,
                              progress=lambda line: print(line, file=sys.stderr, flush=True))
                  for name in expand_names(args.names)]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps([asdict(c) for c in counts], indent=2) if args.format == "json"
          else format_table(counts) if args.format == "table" else format_csv(counts))
    return 0
