"""`wrn table`: results in the layout of the WRN paper's Tables 4/5, or (`--paper`) the paper's rows
with ours beside each (a column per source). Every caption and error column names the split."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from wrn.report import paper
from wrn.report.results import (DATASET_NAMES, Group, ResultsError, aggregate, csv_cell, csv_text,
                                describe_runs, display_name, error_split, family_of_model,
                                load_results)
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
    """One row per configuration (and source: a column names it when there are several)."""
    split = error_split(groups)
    named = ["source"] if len({g.source for g in groups}) > 1 else []  # a column when there are several
    rows, csv_rows = [], []
    for g in groups:
        published, source = paper.published_error(g.model, dataset, g.dropout), [g.source] if named else []
        rows.append([display_name(g.model), *source, DASH if g.depth is None else str(g.depth),
                     DASH if g.widen_factor is None else str(g.widen_factor), f"{g.dropout:g}",
                     _params_m(g.params), _macs_g(g.macs), plus_minus(g.error_mean, g.error_std, g.n),
                     str(g.n), DASH if published is None else f"{published:.2f}"])
        csv_rows.append([display_name(g.model), *source, g.config, g.family, g.depth, g.widen_factor,
                         g.dropout, g.params, g.macs, g.metric, g.error_mean, g.error_std, g.n, published])
    return TableData(
        caption=(f"{DATASET_NAMES.get(dataset, dataset)} {split} error in %, mean ± sample std over n "
                 "seeds; params in millions; MACs in billions of multiply-adds per 32x32 image "
                 "(fvcore); paper: published test error (WRN paper Table 4, sources in "
                 f"wrn/report/paper.py).{about and f' Runs: {about}.'}"),
        headers=("model", *named, "depth", "k", "dropout", "params (M)", "MACs (G)", f"{split} error (%)",
                 "n", "paper test (%)"),
        rows=rows, families=[g.family for g in groups],
        csv_headers=("model", *named, "config", "family", "depth", "widen_factor", "dropout", "params",
                     "macs", "metric", "error_mean", "error_std", "n", "paper_error"),
        csv_rows=csv_rows)


def _correlations(groups: Sequence[Group], dataset: str, sources: Sequence[str]) -> str:
    """Spearman's rank correlation with the paper, over the Wide ResNet rows of each source."""
    parts = []
    for source in sources:
        ours = {(g.model, g.dropout): g.error_mean for g in groups if g.source == source}
        correlation = paper.paper_rank_correlation(ours, dataset)
        rho = "undefined" if math.isnan(correlation.rho) else f"{correlation.rho:.2f}"
        rows = f"{correlation.n} Wide ResNet row{'s' if correlation.n != 1 else ''}"
        parts.append(f"over the {rows} both have: {rho}" if len(sources) == 1 else f"{source} {rho} ({rows})")
    return parts[0] if len(parts) == 1 else "per source: " + ", ".join(parts)


def _ours(g: Group | None) -> list[str]:
    return [DASH, DASH] if g is None else [plus_minus(g.error_mean, g.error_std, g.n), str(g.n)]


def paper_table(groups: Sequence[Group], dataset: str, about: str = "") -> TableData:
    """Every published row of `dataset` in the paper's order, ours beside it where we have it: an
    error and n column per source, the paper's error, then a difference column per source."""
    split = error_split(groups)
    sources = list(dict.fromkeys(g.source for g in groups))
    named = ["source"] if len(sources) > 1 else []  # a CSV column, the readable ones a column each
    ours = {(g.source, g.model.lower(), round(g.dropout, 9)): g for g in groups}
    rows, csv_rows, families = [], [], []
    for entry in paper.published_results(dataset):
        found = [ours.get((source, entry.model, round(entry.dropout, 9))) for source in sources]
        differences = [None if g is None else g.error_mean - entry.error for g in found]
        rows.append([display_name(entry.model, entry.dropout), f"{entry.dropout:g}", _params_m(entry.params),
                     *(cell for g in found for cell in _ours(g)), f"{entry.error:.2f}",
                     *(DASH if d is None else f"{d:+.2f}" for d in differences)])
        csv_rows += [[entry.model, *([source] if named else []), entry.dropout, entry.params, g and g.metric,
                      g and g.error_mean, g and g.error_std, g and g.n, entry.error, difference]
                     for source, g, difference in zip(sources, found, differences)]
        families.append(family_of_model(entry.model))
    not_test = "" if split == "test" else (f" Ours are {split} errors (not every run recorded test_acc), so "
                                           "they do not measure the same split as the paper's.")
    names = sources if named else ["ours"]
    return TableData(
        caption=(f"{DATASET_NAMES.get(dataset, dataset)}: our {split} error in % (mean ± sample std "
                 "over n seeds) beside the published test error (WRN paper Table 4 and its baselines, "
                 "sources in wrn/report/paper.py); difference = ours − paper, in percentage points; "
                 f"params as published, in millions.{not_test}{about and f' Runs: {about}.'} Spearman "
                 f"rank correlation with the paper {_correlations(groups, dataset, sources)}."),
        headers=("model", "dropout", "params (M)",
                 *(h for name in names for h in (f"{name} {split} (%)", "n")),
                 "paper test (%)", *(f"difference {name} (pp)" if named else "difference (pp)"
                                     for name in names)),
        rows=rows, families=families,
        csv_headers=("model", *named, "dropout", "paper_params", "metric", "error_mean",
                     "error_std", "n", "paper_error", "difference"),
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
    align = ["left" if i == 0 or header == "source" else "right" for i, header in enumerate(table.headers)]
    return f"{table.caption}\n\n{render_table(table.headers, table.rows, align)}\n"


FORMATTERS = {"markdown": format_markdown, "latex": format_latex, "csv": format_csv, "text": format_text}


def source_arguments(parser: argparse.ArgumentParser,
                     sweep: str = "a folder holding one (a sweep's output)") -> None:
    """The sources of `wrn table`, `wrn plot` and `wrn sweep summarize`, and their labels."""
    parser.add_argument("sources", type=Path, nargs="+", metavar="SOURCE",
                        help=f"a results.csv, {sweep}, a run folder or its metrics.json, or a folder of "
                        "run folders; several are shown side by side")
    parser.add_argument("--label", action="append", default=[], metavar="NAME",
                        help="a name for each source, given once per source in order (default: "
                        "the folder's name)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wrn table", description="Tabulate results like the WRN paper's Table 4.")
    source_arguments(parser)
    parser.add_argument("--format", choices=sorted(FORMATTERS), default="markdown")
    parser.add_argument("--dataset", choices=sorted(DATASET_NAMES), default="cifar10",
                        help="which published numbers fill the paper column (default cifar10)")
    parser.add_argument("--paper", action="store_true", help="the paper's rows with ours beside them, the "
                        "difference and the Spearman rank correlation over the Wide ResNet rows")
    args = parser.parse_args(argv)
    try:
        results = load_results(*args.sources, labels=args.label)
        groups = aggregate(results.runs)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for message in results.notes:
        print(f"note: {message}", file=sys.stderr)
    table = (paper_table if args.paper else results_table)(groups, args.dataset, describe_runs(results.runs))
    sys.stdout.write(FORMATTERS[args.format](table))
    return 0
