"""results.csv, derived from the run directories, and its per-configuration summary.

One row per run that has a record (OUT/runs/*/sweep.json + metrics.json), in plan order. The file
is rewritten whole and atomically, so a reader or a kill never sees half of it; a damaged one is
reported and rebuilt, since the run directories hold everything it says.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from wrn.runs import RecordError, atomic_write_text, read_metrics
from wrn.sweep.spec import format_value
from wrn.sweep.state import RUNS_DIR, read_sweep_record

RESULTS_FILE = "results.csv"
RESULT_COLUMNS = (
    "run_id", "config", "status", "error", "model", "family", "depth", "widen_factor", "dropout",
    "seed", "params", "flops", "best_val_acc", "final_val_acc", "test_acc", "epochs",
    "wall_seconds", "images_per_sec", "device", "run_dir",
)  # then one column per swept key, named by its dotted key
SUMMARY_METRICS = ("best_val_acc", "final_val_acc", "test_acc")  # fractions in [0, 1]


# ------------------------------------------------------------------------------------- rows


def run_row(out_dir: Path, run_dir: Path, sweep: dict) -> dict | None:
    """The results row of one run directory (`sweep`: its sweep.json); None before a record."""
    try:
        record = read_metrics(run_dir)
    except RecordError as exc:  # resumed by the next `sweep run`; shown, not hidden
        record = {"status": "failed", "error": str(exc), **sweep.get("identity", {})}
    if record is None:
        return None
    row = {column: record.get(column) for column in RESULT_COLUMNS}
    row.update(run_id=sweep["run_id"], config=sweep["config"],
               run_dir=os.path.relpath(run_dir, out_dir))
    row.update(sweep.get("swept", {}))
    return row


def collect_rows(out_dir: Path) -> tuple[list[dict], list[str]]:
    """(rows in plan order, swept keys) from every run directory under OUT/runs."""
    runs = Path(out_dir) / RUNS_DIR
    found = []  # (plan index, run id, run dir, sweep.json)
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        sweep = read_sweep_record(run_dir) if run_dir.is_dir() else None
        if sweep is not None:
            found.append((sweep.get("index", math.inf), sweep["run_id"], run_dir, sweep))
    found.sort(key=lambda item: item[:2])
    rows = [row for *_, run_dir, sweep in found if (row := run_row(out_dir, run_dir, sweep))]
    swept: dict[str, None] = {}  # ordered set
    for *_, sweep in found:
        swept.update(dict.fromkeys(sweep.get("swept_keys") or sweep.get("swept", {})))
    return rows, [key for key in swept if key not in RESULT_COLUMNS]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return value if isinstance(value, str) else format_value(value)


def results_text(rows: list[dict], swept_keys: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [*RESULT_COLUMNS, *swept_keys]
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


def results_problem(path: Path, expected: str | None = None) -> str | None:
    """Why results.csv cannot be trusted (missing, damaged, or not what the runs say), or None."""
    if not path.is_file():
        return "missing"
    try:
        text = path.read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if not rows or tuple(rows[0][:len(RESULT_COLUMNS)]) != RESULT_COLUMNS:
        return "corrupt (wrong or missing header)"
    ragged = next((i for i, row in enumerate(rows[1:], 2) if len(row) != len(rows[0])), None)
    if ragged is not None or not text.endswith("\n"):
        return f"corrupt (truncated at line {ragged or len(rows)})"
    if expected is not None and text != expected:
        return "stale"
    return None


def refresh_results(out_dir: Path, report: Callable[[str], None] = print) -> list[dict]:
    """Rebuild results.csv from the run directories; report it when the old file was damaged."""
    path = Path(out_dir) / RESULTS_FILE
    rows, swept_keys = collect_rows(out_dir)
    text = results_text(rows, swept_keys)
    problem = results_problem(path, expected=text)
    if problem and problem.startswith(("corrupt", "unreadable")):
        report(f"{path} was {problem}; rebuilt from {len(rows)} run director"
               f"{'y' if len(rows) == 1 else 'ies'}")
    if problem:
        atomic_write_text(path, text)
    return rows


# ------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class ConfigSummary:
    """The runs of one `config` (its seeds). Metrics: (mean, sample std, n) over finished runs."""

    config: str
    model: str
    finished: int
    failed: int
    metrics: dict[str, tuple[float, float, int]]
    params: float | None
    flops: float | None  # multiply-adds per image
    wall_seconds: float | None  # mean per finished run


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _stats(values: list[float]) -> tuple[float, float, int]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0  # ddof=1, as the plots use
    return statistics.fmean(values), std, len(values)


def _summarize_group(config: str, rows: list[dict]) -> ConfigSummary:
    finished = [row for row in rows if row.get("status") == "finished"]
    metrics = {}
    for metric in SUMMARY_METRICS:
        values = [v for v in (_number(row.get(metric)) for row in finished) if v is not None]
        if values:
            metrics[metric] = _stats(values)

    def mean_of(column: str) -> float | None:
        return _mean([v for v in (_number(row.get(column)) for row in finished) if v is not None])

    return ConfigSummary(config, rows[0].get("model") or "", len(finished),
                         sum(row.get("status") == "failed" for row in rows), metrics,
                         mean_of("params"), mean_of("flops"), mean_of("wall_seconds"))


def summarize(rows: list[dict]) -> list[ConfigSummary]:
    """One summary per `config`, in the order configs first appear."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["config"], []).append(row)
    return [_summarize_group(config, members) for config, members in groups.items()]


def _si(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


def _pm(stats: tuple[float, float, int] | None) -> str:
    return f"{100 * stats[0]:.2f} ± {100 * stats[1]:.2f}" if stats else "-"


def summary_table(summaries: list[ConfigSummary]) -> str:
    """Accuracies in %, mean ± sample std over seeds; n = finished runs."""
    shown = [m for m in SUMMARY_METRICS if any(m in s.metrics for s in summaries)]
    header = ["config", "model", "n", "failed", *[f"{m} %" for m in shown], "params", "MACs",
              "wall/run"]
    body = [[s.config, s.model, str(s.finished), str(s.failed),
             *[_pm(s.metrics.get(m)) for m in shown], _si(s.params), _si(s.flops),
             _duration(s.wall_seconds)] for s in summaries]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in [header, *body]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _duration(seconds: float | None) -> str:
    from wrn.sweep.progress import duration

    return duration(seconds) if seconds is not None else "-"


def summary_records(summaries: list[ConfigSummary]) -> list[dict]:
    """Flat records (mean, std, n per metric), for --format csv/json."""
    records = []
    for s in summaries:
        record = {k: v for k, v in asdict(s).items() if k != "metrics"}
        for metric in SUMMARY_METRICS:
            mean, std, n = s.metrics.get(metric, (None, None, 0))
            record.update({f"{metric}_mean": mean, f"{metric}_std": std, f"{metric}_n": n})
        records.append(record)
    return records


def summary_csv(summaries: list[ConfigSummary]) -> str:
    records = summary_records(summaries)
    buffer = io.StringIO()
    if records:
        writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in records)
    return buffer.getvalue()


def summary_json(summaries: list[ConfigSummary]) -> str:
    return json.dumps(summary_records(summaries), indent=2)
