"""A sweep's run directories: their layout, what state each is in, and how a failure is recorded.

    OUT/runs/<run_id>/
        point.yaml    the point's overrides, the run's last --config (written before each launch)
        sweep.json    run id, config label, swept values: what results.csv needs beside metrics.json
        log.txt       the `wrn fit` process's stdout and stderr, appended by every attempt
        .sweep.lock   flock'ed while a sweep runs it (so status can tell running from interrupted)
        config.yaml, metrics.json, epochs.jsonl, checkpoints/   written by `wrn fit` (wrn.runs)

The run directories are the source of truth: results.csv is rebuilt from them at any time.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from wrn.runs import (METRIC_KEYS, METRICS_FILE, RecordError, atomic_write_json, atomic_write_text,
                      read_metrics)

RUNS_DIR = "runs"
POINT_FILE = "point.yaml"
SWEEP_FILE = "sweep.json"
LOG_FILE = "log.txt"
LOCK_FILE = ".sweep.lock"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
LOG_TAIL_BYTES = 64 * 1024  # bytes read from the end of log.txt to find the last message

NEW, FINISHED, INTERRUPTED, FAILED, RUNNING = "new", "finished", "interrupted", "failed", "running"
# Errors that mean someone stopped the run (Ctrl-C, the sweep's own shutdown), not that it broke:
# such a run is resumed like an interrupted one and uses no retry.
INTERRUPTIONS = ("KeyboardInterrupt", "SIGTERMException")
BUSY = "busy"  # an attempt that could not start: another live sweep holds the run directory


@dataclass(frozen=True)
class RunStatus:
    state: str  # new | finished | interrupted | failed | running
    detail: str = ""


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: finished, failed, or busy (another sweep holds the run)."""

    run_id: str
    status: str
    error: str | None = None
    seconds: float = 0.0  # wall time of this attempt's process
    best_val_acc: float | None = None


def run_dir_of(out_dir: Path, run_id: str) -> Path:
    return Path(out_dir) / RUNS_DIR / run_id


def last_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / LAST_CHECKPOINT
    return path if path.is_file() else None


# ------------------------------------------------------------------------------------- locking


def acquire_lock(run_dir: Path) -> IO | None:
    """An open, exclusively flock'ed lock file, or None when another process holds it. The lock
    dies with its holders, so a SIGKILLed sweep never leaves a run looking busy."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    handle = open(Path(run_dir) / LOCK_FILE, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def is_locked(run_dir: Path) -> bool:
    """Whether a live sweep holds the run; opens the lock file read-only and creates nothing, so
    `wrn sweep status` works on a read-only sweep."""
    try:
        handle = open(Path(run_dir) / LOCK_FILE, "rb")
    except OSError:  # no lock file (never run, or not readable): nobody can hold it
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # refused while a sweep holds LOCK_EX
        except BlockingIOError:
            return True
    return False


# ------------------------------------------------------------------------------------- states


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "-"


def inspect_run(run_dir: Path) -> RunStatus:
    """What a run directory says about its run, without changing it."""
    run_dir = Path(run_dir)
    if is_locked(run_dir):
        return RunStatus(RUNNING, "held by a live sweep")
    checkpoint = last_checkpoint(run_dir)
    try:
        record = read_metrics(run_dir)
    except RecordError as exc:
        return RunStatus(INTERRUPTED if checkpoint else NEW, str(exc))
    status = record.get("status") if record else None
    if status == "finished":
        return RunStatus(FINISHED, f"best_val_acc {_percent(record.get('best_val_acc'))}")
    error = (record.get("error") or "") if record else ""
    if status == "failed" and error.startswith(INTERRUPTIONS):
        return RunStatus(INTERRUPTED, f"stopped by {error.split(':')[0]}")
    if status == "failed":
        return RunStatus(FAILED, error or "no reason recorded")
    if checkpoint or status == "running":
        epochs = f"epoch {record.get('epochs', 0)}/{record.get('max_epochs')}" if record else "no record"
        return RunStatus(INTERRUPTED, epochs + ("" if checkpoint else ", no checkpoint: restarts"))
    return RunStatus(NEW)


# ------------------------------------------------------------------------------------- files


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
    path = Path(run_dir) / LOG_FILE
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    # Progress bars redraw with carriage returns; the last redraw is what the screen showed.
    lines = [line.split("\r")[-1].strip() for line in tail.splitlines()]
    return next((line for line in reversed(lines) if line), None)


def _exit_text(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"


def record_signature(run_dir: Path) -> tuple | None:
    """Identifies the current metrics.json version; every atomic rewrite makes a new inode."""
    try:
        stat = (Path(run_dir) / METRICS_FILE).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _written_since(run_dir: Path, before: tuple | None) -> dict:
    """metrics.json if this attempt rewrote it (a retry must not report the previous error)."""
    if record_signature(run_dir) in (before, None):
        return {}
    try:
        return read_metrics(run_dir) or {}
    except RecordError:
        return {}


def failure_reason(run_dir: Path, returncode: int, before: tuple | None) -> str:
    """The run's own error when this attempt recorded one, else the last line it printed."""
    record = _written_since(run_dir, before)
    if record.get("status") == "failed" and record.get("error"):
        return f"{record['error']} ({_exit_text(returncode)})"
    if returncode == 0:
        return f"process exited 0 without a finished record (status {record.get('status')})"
    line = last_log_line(run_dir)
    return f"{line} ({_exit_text(returncode)})" if line else _exit_text(returncode)


def record_failure(run_dir: Path, identity: dict, reason: str) -> None:
    """metrics.json with status failed, keeping whatever the run had recorded itself."""
    try:
        record = read_metrics(run_dir) or {}
    except RecordError:
        record = {}
    blank = dict.fromkeys(METRIC_KEYS)
    atomic_write_json(Path(run_dir) / METRICS_FILE,
                      {**blank, **identity, **record, "status": "failed", "error": reason})


def conclude(run_id: str, run_dir: Path, identity: dict, returncode: int, before: tuple | None,
             seconds: float) -> Outcome:
    """After the process ended (`before`: the record_signature at launch): a finished record is
    success; anything else is recorded as failed, with the reason."""
    record = _written_since(run_dir, before)
    if returncode == 0 and record.get("status") == "finished":
        return Outcome(run_id, FINISHED, None, seconds, record.get("best_val_acc"))
    reason = failure_reason(run_dir, returncode, before)
    record_failure(run_dir, identity, reason)
    return Outcome(run_id, FAILED, reason, seconds)
