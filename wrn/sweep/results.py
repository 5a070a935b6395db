"""A sweep's results.csv, rebuilt from its run folders: a row per run (per seed of a fused run),
in plan order; a damaged file is reported and rebuilt."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

from wrn import rundir
from wrn.report.results import (RESULT_COLUMNS, RESULTS_FILE, results_problem, results_text,
                                write_results)
from wrn.sweep.spec import SEED_KEY
from wrn.sweep.state import RUNS_DIR, SWEEP_FILE, read_sweep_record


def _record(run_dir: Path, identity: dict) -> dict | None:
    try:
        return rundir.read_metrics(run_dir)
    except rundir.RecordError as exc:  # resumed by the next `sweep run`; shown, not hidden
        return {"status": rundir.FAILED, "error": str(exc), **identity}


def run_rows(out_dir: Path, run_dir: Path, sweep: dict) -> list[dict]:
    """The results rows of one run directory (`sweep`: its sweep.json): one, or one per copy of a
    fused run; none before a record."""
    identity = sweep.get("identity", {})
    record = _record(run_dir, identity)
    if record is None:
        return []
    rows = []
    copies = rundir.result_records(run_dir, record, lambda copy: _record(copy, identity))
    for folder, fields in copies:
        row = {column: fields.get(column) for column in RESULT_COLUMNS} | sweep.get("swept", {})
        run_id = sweep["run_id"] if folder == run_dir else f"{sweep['run_id']}/{folder.name}"
        row.update(run_id=run_id, config=sweep["config"], run_dir=os.path.relpath(folder, out_dir))
        if SEED_KEY in row:  # a fused copy's seed is its own, not the point's first seed
            row[SEED_KEY] = fields.get("seed", row[SEED_KEY])
        rows.append(row)
    return rows


def collect_rows(out_dir: Path, report: Callable[[str], None] = print) -> tuple[list[dict], list[str]]:
    """(rows in plan order, swept keys) from every run directory under OUT/runs; a run whose
    sweep.json is unreadable is named (the next `wrn sweep run` rewrites it)."""
    runs = Path(out_dir) / RUNS_DIR
    found = []  # (plan index, run id, run dir, sweep.json)
    for run_dir in sorted(runs.iterdir()) if runs.is_dir() else []:
        sweep = read_sweep_record(run_dir) if run_dir.is_dir() else None
        if sweep is not None:
            found.append((sweep.get("index", math.inf), sweep["run_id"], run_dir, sweep))
        elif rundir.record_path(run_dir).exists():
            report(f"{run_dir}: {SWEEP_FILE} is missing or damaged; this run is left out of "
                   f"{RESULTS_FILE} until `wrn sweep run` rewrites it")
    found.sort(key=lambda item: item[:2])
    rows = [row for *_, run_dir, sweep in found for row in run_rows(out_dir, run_dir, sweep)]
    swept = dict.fromkeys(key for *_, sweep in found for key in sweep.get("swept_keys", []))
    return rows, [key for key in swept if key not in RESULT_COLUMNS]


def refresh_results(out_dir: Path, report: Callable[[str], None] = print) -> list[dict]:
    """Rebuild results.csv from the run directories; report it when the old file was damaged."""
    path = Path(out_dir) / RESULTS_FILE
    rows, swept_keys = collect_rows(out_dir, report)
    text = results_text(rows, swept_keys)
    problem = results_problem(path, expected=text)
    if problem and problem.startswith(("corrupt", "unreadable")):
        report(f"{path} was {problem}; rebuilt from {len(rows)} run director"
               f"{'y' if len(rows) == 1 else 'ies'}")
    if problem:
        write_results(path, text)
    return rows
