"""The run record: what one training run leaves behind, written atomically, read by sweeps and plots.

A run directory holds
    config.yaml     the full LightningCLI config (written by the CLI), enough to reproduce the run
    metrics.json    one JSON object: the summary below, rewritten atomically at every epoch end
    epochs.jsonl    one JSON line per finished epoch: the run's identity plus that epoch's metrics
    checkpoints/    last.ckpt, previous-last.ckpt and best.ckpt (see wrn.checkpoints)
    eval/<command>-<time>/   one folder per `wrn validate|test|predict`: evaluation.json (validate,
                    test), metrics.csv and the command's config.yaml; the files above stay as the
                    fit left them
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

METRICS_FILE = "metrics.json"
EPOCHS_FILE = "epochs.jsonl"
CONFIG_FILE = "config.yaml"
EVALUATION_FILE = "evaluation.json"

# Keys every metrics.json carries; accuracies are fractions in [0, 1], flops are fvcore
# multiply-adds per 32x32 image, wall_seconds is fit time, images_per_sec is training throughput;
# test_acc / test_acc_best: the test split with the final / best-validation weights (None when the
# data has no test split).
METRIC_KEYS = (
    "status", "error", "model", "family", "depth", "widen_factor", "dropout", "model_args",
    "params", "flops", "best_val_acc", "final_val_acc", "test_acc", "test_acc_best", "epochs", "max_epochs",
    "global_step", "wall_seconds", "images_per_sec", "device", "seed",
)
STATUSES = ("running", "finished", "failed")


class RecordError(ValueError):
    """A run record that exists but cannot be read: truncated, not JSON, or missing keys."""


SHARED_FILE_MODE = 0o644  # records, caches and figures are meant to be read by others


@contextmanager
def atomic_file(path: str | os.PathLike, keep_previous: str | os.PathLike | None = None
                ) -> Iterator[BinaryIO]:
    """A binary file to write `path` through: a temporary file beside it, fsync'ed, then renamed
    over it, so readers see the old file or the new one, never half. On any failure the temporary
    file goes and `path` stays as it was. `keep_previous`: where the file being replaced is kept.
    The one place in the package that writes a file whole (records, caches, checkpoints, figures)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, SHARED_FILE_MODE)  # mkstemp makes 0600
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`text` as UTF-8 into `path`, atomically (see `atomic_file`)."""
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, sort_keys=True) + "\n")


def append_jsonl(path: str | os.PathLike, obj: dict) -> None:
    """Append one line; a line is written with a single write call so a kill leaves at most a
    truncated last line, which `read_jsonl` reports and skips; the next line starts afresh."""
    line = json.dumps(_clean(obj), sort_keys=True) + "\n"
    with open(path, "a+b") as f:  # writes go to the end whatever the read position
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":  # after a truncated last line: this one starts a line of its own
                line = "\n" + line
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def drop_epochs_from(path: str | os.PathLike, first_epoch: int) -> None:
    """Rewrite epochs.jsonl atomically without its lines for epochs >= first_epoch (what a run
    resumed at first_epoch will redo); unreadable lines stay for `read_jsonl` to report."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)

    def redone(line: str) -> bool:
        try:
            epoch = json.loads(line).get("epoch")
        except (json.JSONDecodeError, AttributeError):
            return False
        return isinstance(epoch, int) and epoch >= first_epoch

    kept = [line for line in lines if not redone(line)]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Return (records, problems): every parseable line, and one message per bad line."""
    records, problems = [], []
    path = Path(path)
    if not path.exists():
        return records, problems
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            problems.append(f"{path}:{number}: unreadable line (truncated write?) skipped")
    return records, problems


def read_metrics(run_dir: str | os.PathLike) -> dict | None:
    """The run's metrics.json, None when the run never wrote one, RecordError when it is damaged."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: corrupt run record ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(record, dict):
        raise RecordError(f"{path}: corrupt run record (expected a JSON object)")
    missing = [k for k in ("status", "model") if k not in record]
    if missing:
        raise RecordError(f"{path}: corrupt run record (missing {', '.join(missing)})")
    return record


def run_identity(spec, seed: int | None, max_epochs: int | None) -> dict:
    """What a run is, as every record names it (metrics.json, a sweep's failure record): the
    resolved model (`wrn.models.resolve_model`'s spec), the seed and the epochs it trains."""
    return {"model": spec.name, "family": spec.family, "model_args": spec.args,
            "depth": spec.args.get("depth"), "widen_factor": spec.args.get("widen_factor", 1),
            "dropout": spec.args.get("dropout", 0.0), "seed": seed, "max_epochs": max_epochs}
