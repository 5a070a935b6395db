"""`wrn table`: a sweep's results in the layout of the WRN paper's Tables 4/5, or (`--paper`) the
paper's rows with ours beside each. Every caption and error column names the split."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from wrn.report import paper
from wrn.report.results import (DATASET_NAMES, Group, ResultsError, aggregate, csv_cell, csv_text,
                                display_name, error_split, family_of_model, load_results)
from wrn.report.runinfo import describe_runs
from wrn.report.text import DASH, plus_minus, render_table


@dataclass(frozen=True)
class TableData:
    """One table, whatever the format: readable cells (the first names the row, the others are
    numbers, right-aligned), and unrounded values for CSV."""

    caption: str
    headers: tuple[str, ...]
    rows: list[list[str]]
    families: list[str]  # per row: a rule goes between families in LaTeX
    csv_headers: tuple[str, ...]
    csv_rows: list[list[object]]


def _params_m(params: float | None) -> str:
    return DASH if params is None else f"{params / 1e6:.{2 if params / 1e6 < 1 else 1}f}"


def _macs_g(macs: float | None) -> str:
    return DASH if macs is None else f"{macs / 1e9:.{3 if macs / 1e9 < 0.1 else 2}f}"


def results_table(groups: Sequence[Group], dataset: str, about: str = "") -> TableData:
    split = error_split(groups)
    rows, csv_rows = [], []
    for g in groups:
        published = paper.published_error(g.model, dataset, g.dropout)
        rows.append([display_name(g.model), DASH if g.depth is None else str(g.depth),
                     DASH if g.widen_factor is None else str(g.widen_factor), f"{g.dropout:g}",
                     _params_m(g.params), _macs_g(g.macs), plus_minus(g.error_mean, g.error_std, g.n),
                     str(g.n), DASH if published is None else f"{published:.2f}"])
        csv_rows.append([display_name(g.model), g.config, g.family, g.depth, g.widen_factor, g.dropout,
                         g.params, g.macs, g.metric, g.error_mean, g.error_std, g.n, published])
    return TableData(
        caption=(f"{DATASET_NAMES.get(dataset, dataset)} {split} error in %, mean ± sample std over n "
                 "seeds; params in millions; MACs in billions of multiply-adds per 32x32 image "
                 "(fvcore); paper: published test error (WRN paper Table 4, sources in "
                 f"wrn/report/paper.py).{about and f' Runs: {about}.'}"),
        headers=("model", "depth", "k", "dropout", "params (M)", "MACs (G)", f"{split} error (%)",
                 "n", "paper test (%)"),
        rows=rows, families=[g.family for g in groups],
        csv_headers=("model", "config", "family", "depth", "widen_factor", "dropout", "params",
                     "macs", "metric", "error_mean", "error_std", "n", "paper_error"),
        csv_rows=csv_rows)


def paper_table(groups: Sequence[Group], dataset: str, about: str = "") -> TableData:
    """Every published row of `dataset` in the paper's order, ours beside it where we have it."""
    split = error_split(groups)
    ours = {(g.model.lower(), round(g.dropout, 9)): g for g in groups}
    rows, csv_rows, families = [], [], []
    for entry in paper.published_results(dataset):
        g = ours.get((entry.model, round(entry.dropout, 9)))
        difference = None if g is None else g.error_mean - entry.error
        rows.append([display_name(entry.model, entry.dropout), f"{entry.dropout:g}", _params_m(entry.params),
                     DASH if g is None else plus_minus(g.error_mean, g.error_std, g.n),
                     DASH if g is None else str(g.n), f"{entry.error:.2f}",
                     DASH if difference is None else f"{difference:+.2f}"])
        csv_rows.append([entry.model, entry.dropout, entry.params, g and g.metric,
                         g and g.error_mean, g and g.error_std, g and g.n, entry.error, difference])
        families.append(family_of_model(entry.model))
    correlation = paper.paper_rank_correlation({(g.model, g.dropout): g.error_mean for g in groups}, dataset)
    rho = "undefined" if math.isnan(correlation.rho) else f"{correlation.rho:.2f}"
    not_test = "" if split == "test" else (f" Ours are {split} errors (not every run recorded test_acc), so "
                                           "they do not measure the same split as the paper's.")
    return TableData(
        caption=(f"{DATASET_NAMES.get(dataset, dataset)}: our {split} error in % (mean ± sample std "
                 "over n seeds) beside the published test error (WRN paper Table 4 and its baselines, "
                 "sources in wrn/report/paper.py); difference = ours − paper, in percentage points; "
                 f"params as published, in millions.{not_test}{about and f' Runs: {about}.'} Spearman "
                 f"rank correlation with the paper over the {correlation.n} Wide ResNet "
                 f"row{'s' if correlation.n != 1 else ''} both have: {rho}."),
        headers=("model", "dropout", "params (M)", f"ours {split} (%)", "n", "paper test (%)",
                 "difference (pp)"),
        rows=rows, families=families,
        csv_headers=("model", "dropout", "paper_params", "metric", "error_mean", "error_std", "n",
                     "paper_error", "difference"),
        csv_rows=csv_rows)


def format_markdown(table: TableData) -> str:
    lines = [f"Table: {table.caption}", "", "| " + " | ".join(table.headers) + " |",
             "|---|" + "---:|" * (len(table.headers) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table.rows]
    return "\n".join(lines) + "\n"


def _latex(text: str) -> str:
    for old, new in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                     ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), (" ± ", r" $\pm$ "), ("±", r"$\pm$"),
                     (DASH, "--"), ("−", "--")):
        text = text.replace(old, new)
    return text


def format_latex(table: TableData) -> str:
    headers = [f"${h}$" if len(h) == 1 else _latex(h[0].upper() + h[1:]) for h in table.headers]
    lines = [r"% needs \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
             rf"\caption{{{_latex(table.caption)}}}",
             r"\begin{tabular}{l" + "r" * (len(table.headers) - 1) + "}",
             r"\toprule", " & ".join(headers) + r" \\", r"\midrule"]
    for previous, family, cells in zip([None, *table.families], table.families, table.rows):
        if previous is not None and previous != family:
            lines.append(r"\midrule")  # families apart, as in the paper's table
        lines.append(" & ".join(_latex(cell) for cell in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def format_csv(table: TableData) -> str:
    """Unrounded numbers for other programs; the rounding is the other formats' business. Counts
    arrive as floats from the CSV: written 36479194, not 36479194.0."""
    rows = ([str(int(v)) if isinstance(v, float) and v.is_integer() else csv_cell(v) for v in row]
            for row in table.csv_rows)
    return csv_text(table.csv_headers, rows)


def format_text(table: TableData) -> str:
    align = ["left"] + ["right"] * (len(table.headers) - 1)
    return f"{table.caption}\n\n{render_table(table.headers, table.rows, align)}\n"


FORMATTERS = {"markdown": format_markdown, "latex": format_latex, "csv": format_csv, "text": format_text}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wrn table", description="Tabulate a sweep's results.csv like the WRN paper's Table 4.")
    parser.add_argument("results", type=Path, metavar="RESULTS.csv")
    parser.add_argument("--format", choices=sorted(FORMATTERS), default="markdown")
    parser.add_argument("--dataset", choices=sorted(DATASET_NAMES), default="cifar10",
                        help="which published numbers fill the paper column (default cifar10)")
    parser.add_argument("--paper", action="store_true", help="the paper's rows with ours beside them, the "
                        "difference and the Spearman rank correlation over the Wide ResNet rows")
    args = parser.parse_args(argv)
    try:
        results = load_results(args.results)
        groups = aggregate(results.runs)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for message in results.notes:
        print(f"note: {message}", file=sys.stderr)
    table = (paper_table if args.paper else results_table)(groups, args.dataset, describe_runs(results.runs))
    sys.stdout.write(FORMATTERS[args.format](table))
    return 0
