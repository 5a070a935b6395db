"""`wrn plot`: the figures of one or several sources of results, overlaid; what could not be drawn
is printed instead."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import matplotlib
from matplotlib.figure import Figure

from wrn.report.curves import plot_curves, warn
from wrn.report.figures import (STYLE, PlotOptions, plot_error_vs_macs, plot_error_vs_params,
                                plot_error_vs_time)
from wrn.report.heatmap import plot_heatmap
from wrn.report.results import DATASET_NAMES, ResultsError, aggregate, describe_runs, load_results
from wrn.report.tables import source_arguments
from wrn.files import atomic_file

FORMATS = ("png", "svg", "pdf")

# (file stem, figure function: groups, PlotOptions -> Drawing or None when empty, why it can be empty)
FIGURES = (
    ("error_vs_params", plot_error_vs_params, "no finished run has params"),
    ("error_vs_macs", plot_error_vs_macs, "no finished run has macs"),
    ("heatmap", plot_heatmap, "no finished Wide ResNet runs"),
    ("error_vs_time", plot_error_vs_time, "no finished run has wall_seconds"),
    ("curves", plot_curves, "no run has a readable epochs.jsonl"),
)


def save_figure(fig: Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        # No date in the metadata: re-plotting unchanged results gives identical files.
        metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
        with atomic_file(path) as f:  # a killed plot never leaves half a figure
            fig.savefig(f, format=fmt, bbox_inches="tight", pad_inches=0.08, metadata=metadata)
        paths.append(path)
    return paths


def _formats(text: str) -> list[str]:
    formats = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FORMATS)}, comma separated")
    return formats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wrn plot", description="Plot results: error vs parameters, MACs and training time, a "
        "WRN depth x width heatmap, and validation curves; several sources share the axes.")
    source_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the figures")
    parser.add_argument("--paper", action="store_true",
                        help="overlay the published WRN-paper test errors as hollow markers")
    parser.add_argument("--dataset", choices=sorted(DATASET_NAMES), default="cifar10",
                        help="which published numbers to overlay, and the title (default cifar10)")
    parser.add_argument("--formats", type=_formats, default=["png", "svg"],
                        help="comma-separated image formats (default png,svg)")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        print(f"error: --out {args.out} is a file; expected a folder for the figures", file=sys.stderr)
        return 2
    try:
        results = load_results(*args.sources, labels=args.label)
        for message in results.notes:
            print(f"note: {message}", file=sys.stderr)
        options = PlotOptions(args.dataset, args.paper, describe_runs(results.runs), results.sources)
        groups = aggregate(results.runs)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = []
    with matplotlib.rc_context(STYLE):
        for name, make, empty_reason in FIGURES:  # a figure without data (e.g. no WRN runs) is skipped
            drawing = make(groups, options)
            if drawing is None:
                warn(f"{name}: skipped, {empty_reason}")
                continue
            for message in drawing.notes:
                print(f"note: {name}: {message}", file=sys.stderr)
            written += save_figure(drawing.figure, args.out / name, args.formats)
    for path in written:
        print(path)
    return 0
