"""A sweep's results as a table in the layout of the WRN paper's Tables 4/5.

    wrn table RESULTS.csv --format markdown|latex|csv [--dataset cifar10]

One row per configuration (seeds aggregated), baselines first then Wide ResNets, each by
parameter count, with the published error beside the reproduced one where `wrn.paper` has it.
Reading and aggregation are `wrn.plots`'s: one reader for every consumer of results.csv.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Sequence

from wrn import paper
from wrn.plots import (DATASET_NAMES, Group, ResultsError, aggregate, display_name, error_source,
                       load_results)

HEADERS = ("model", "depth", "k", "dropout", "params (M)", "FLOPs (G)", "error (%)", "n", "paper (%)")
CSV_HEADERS = (
    "model", "config", "family", "depth", "widen_factor", "dropout", "params", "flops",
    "metric", "error_mean", "error_std", "n", "paper_error",
)
DASH = "–"
VAL_MARK = "†"  # marks errors from validation accuracy when others in the table are test errors


def _params_m(params: float | None) -> str:
    if params is None:
        return DASH
    millions = params / 1e6
    return f"{millions:.2f}" if millions < 1 else f"{millions:.1f}"


def _flops_g(flops: float | None) -> str:
    if flops is None:
        return DASH
    giga = flops / 1e9
    return f"{giga:.3f}" if giga < 0.1 else f"{giga:.2f}"


def _error(group: Group, mark_val: bool) -> str:
    text = f"{group.error_mean:.2f}" + (f" ± {group.error_std:.2f}" if group.n > 1 else "")
    return text + (VAL_MARK if mark_val and group.metric == "best_val_acc" else "")


def display_cells(group: Group, dataset: str, mark_val: bool) -> list[str]:
    """The human-readable cells of one row, in HEADERS order."""
    published = paper.published_error(group.model, dataset, group.dropout)
    return [
        display_name(group.model),
        DASH if group.depth is None else str(group.depth),
        DASH if group.widen_factor is None else str(group.widen_factor),
        f"{group.dropout:g}",
        _params_m(group.params),
        _flops_g(group.flops),
        _error(group, mark_val),
        str(group.n),
        DASH if published is None else f"{published:.2f}",
    ]


def _metric_phrase(groups: Sequence[Group]) -> str:
    return {"test": "test error", "validation": "best validation error"}.get(
        error_source(groups),
        f"test error ({VAL_MARK}: best validation error, those configurations have no test accuracy)")


def caption(groups: Sequence[Group], dataset: str) -> str:
    return (f"{DATASET_NAMES.get(dataset, dataset)} {_metric_phrase(groups)} in %, mean ± sample "
            "std over n seeds; params in millions; FLOPs in billions of multiply-adds per 32x32 "
            "image (fvcore); paper: published test error (WRN paper Table 4, sources in wrn/paper.py).")


def _mixed(groups: Sequence[Group]) -> bool:
    return len({g.metric for g in groups}) > 1


def format_markdown(groups: Sequence[Group], dataset: str) -> str:
    numeric = (False, True, True, True, True, True, True, True, True)
    lines = [
        f"Table: {caption(groups, dataset)}",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---:" if right else "---" for right in numeric) + "|",
    ]
    lines += ["| " + " | ".join(display_cells(g, dataset, _mixed(groups))) + " |" for g in groups]
    return "\n".join(lines) + "\n"


def _latex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                          ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text.replace(" ± ", r" $\pm$ ").replace("±", r"$\pm$").replace(DASH, "--").replace(
        VAL_MARK, r"$^\dagger$")


def format_latex(groups: Sequence[Group], dataset: str) -> str:
    headers = ("Model", "Depth", "$k$", "Dropout", "Params (M)", "FLOPs (G)", r"Error (\%)",
               "$n$", r"Paper (\%)")
    lines = [
        r"% needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex(caption(groups, dataset))}}}",
        r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}",
        r"\toprule",
        " & ".join(headers) + r" \\",
        r"\midrule",
    ]
    for previous, group in zip([None, *groups], groups):
        if previous is not None and previous.family != group.family:
            lines.append(r"\midrule")  # families apart, as in the paper's table
        cells = display_cells(group, dataset, _mixed(groups))
        lines.append(" & ".join(_latex(cell) for cell in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _raw(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):  # counts arrive as floats from the CSV: write 36479194, not 36479194.0
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def format_csv(groups: Sequence[Group], dataset: str) -> str:
    """Unrounded numbers for other programs; the rounding is the other formats' business."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    for g in groups:
        published = paper.published_error(g.model, dataset, g.dropout)
        writer.writerow([_raw(v) for v in (
            display_name(g.model), g.config, g.family, g.depth, g.widen_factor, g.dropout,
            g.params, g.flops, g.metric, g.error_mean, g.error_std, g.n, published)])
    return buffer.getvalue()


FORMATTERS = {"markdown": format_markdown, "latex": format_latex, "csv": format_csv}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wrn table", description="Tabulate a sweep's results.csv like the WRN paper's Table 4.")
    parser.add_argument("results", type=Path, metavar="RESULTS.csv")
    parser.add_argument("--format", choices=sorted(FORMATTERS), default="markdown")
    parser.add_argument("--dataset", choices=sorted(DATASET_NAMES), default="cifar10",
                        help="which published numbers fill the paper column (default cifar10)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        groups = aggregate(load_results(args.results).runs)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(FORMATTERS[args.format](groups, args.dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
