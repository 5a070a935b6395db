"""What a sweep adds to each run folder (point.yaml, sweep.json, log.txt) and how an attempt's
ending is recorded; the rest of the folder is the run's own (wrn.rundir)."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import yaml

from wrn import rundir
from wrn.files import atomic_write_json, atomic_write_text

RUNS_DIR = "runs"
POINT_FILE, SWEEP_FILE, LOG_FILE = "point.yaml", "sweep.json", "log.txt"
LOG_TAIL_BYTES = 64 * 1024  # read from the end of log.txt to find the last message
BUSY = "busy"  # an attempt that could not start: another live process holds the run folder


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: finished, interrupted, failed, or busy (held elsewhere)."""

    run_id: str
    status: str
    error: str | None = None
    seconds: float = 0.0  # wall time of this attempt's process
    best_val_acc: float | None = None


def run_dir_of(out_dir: Path, run_id: str) -> Path:
    return Path(out_dir) / RUNS_DIR / run_id


def write_run_files(run_dir: Path, nested_overrides: dict, sweep_record: dict) -> Path:
    """point.yaml and sweep.json, atomically; returns the point file's path."""
    point_file = Path(run_dir) / POINT_FILE
    atomic_write_text(point_file, yaml.safe_dump(nested_overrides, sort_keys=False))
    atomic_write_json(Path(run_dir) / SWEEP_FILE, sweep_record)
    return point_file


def read_sweep_record(run_dir: Path) -> dict | None:
    """sweep.json, or None when missing or unusable (the next `sweep run` rewrites it)."""
    try:
        record = json.loads((Path(run_dir) / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"run_id", "config"} <= record.keys() else None


def last_log_line(run_dir: Path) -> str | None:
    try:
        with open(Path(run_dir) / LOG_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    # Progress bars redraw with carriage returns; the last redraw is what the screen showed.
    lines = [line.split("\r")[-1].strip() for line in tail.splitlines()]
    return next((line for line in reversed(lines) if line), None)


def _exit_text(returncode: int) -> str:
    return f"killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exit code {returncode}"


def record_failure(run_dir: Path, identity: dict, reason: str) -> None:
    """metrics.json with status failed, keeping whatever the run had recorded itself."""
    record = {**dict.fromkeys(rundir.METRIC_KEYS), **identity, **rundir.read_record(run_dir)}
    rundir.write_metrics(run_dir, {**record, "status": rundir.FAILED, "error": reason})


def conclude(run_id: str, run_dir: Path, identity: dict, returncode: int, before: tuple | None,
             seconds: float) -> Outcome:
    """After the process ended (`before`: the record's signature at launch): finished, or
    interrupted as the run recorded it; anything else is recorded as failed, with the reason."""
    # Only a record this attempt rewrote: a retry must not report the previous error.
    record = {} if rundir.record_signature(run_dir) in (before, None) else rundir.read_record(run_dir)
    status = record.get("status")
    if returncode == 0 and status == rundir.FINISHED:
        return Outcome(run_id, rundir.FINISHED, None, seconds, record.get("best_val_acc"))
    if status == rundir.INTERRUPTED:
        return Outcome(run_id, rundir.INTERRUPTED, record.get("error"), seconds)
    if status == rundir.FAILED and record.get("error"):
        reason = f"{record['error']} ({_exit_text(returncode)})"
    elif returncode == 0:
        reason = f"process exited 0 without a finished record (status {status})"
    else:
        line = last_log_line(run_dir)
        reason = f"{line} ({_exit_text(returncode)})" if line else _exit_text(returncode)
    record_failure(run_dir, identity, reason)
    return Outcome(run_id, rundir.FAILED, reason, seconds)
