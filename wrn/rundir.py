"""A run folder: what it holds (config.yaml, metrics.json, epochs.jsonl, checkpoints/, eval/,
seed-<s>/, .lock), what state its run is in, and whether it may be written. No other module
spells these names."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pickle
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from wrn.errors import checkpoint_load_error
from wrn.files import (append_jsonl, atomic_file, atomic_write_json, atomic_write_text,
                       read_jsonl)

CONFIG, METRICS, EPOCHS, EVALUATION = "config.yaml", "metrics.json", "epochs.jsonl", "evaluation.json"
CHECKPOINTS, LAST, PREVIOUS_LAST, BEST = "checkpoints", "last.ckpt", "previous-last.ckpt", "best.ckpt"
EVAL, LOCK, COPY_PREFIX = "eval", ".lock", "seed-"
LOCK_FD_ENV = "WRN_RUN_LOCK_FD"  # the lock a sweep holds for the run it starts, passed down

# A run's status, as metrics.json records it and a resume reads it: running (or killed, when no
# live process holds the folder: resumed), finished (skipped), interrupted (SIGTERM or Ctrl-C:
# resumed, no retry used), failed (retried); a folder without a record is new.
NEW, RUNNING, FINISHED, FAILED, INTERRUPTED = "new", "running", "finished", "failed", "interrupted"
# Accuracies are fractions; macs are fvcore multiply-adds per 32x32 image; test_acc and
# test_acc_best: the final and the best-validation weights on the test split.
METRIC_KEYS = (
    "status", "error", "model", "family", "depth", "widen_factor", "dropout", "model_args",
    "params", "macs", "best_val_acc", "final_val_acc", "test_acc", "test_acc_best", "epochs",
    "max_epochs", "global_step", "wall_seconds", "images_per_sec", "device", "seed",
)

Run = str | os.PathLike

# Parsed `wrn fit` keys that do not change what a run computes: where it writes and reads, what it
# prints, how many loader processes it uses. Everything else is a run setting. data.root is a
# place: the same data set at another path (another machine) is the same run.
NOT_SETTINGS = ("config", "trainer.default_root_dir", "trainer.logger", "trainer.callbacks",
                "trainer.enable_progress_bar", "trainer.enable_model_summary",
                "trainer.log_every_n_steps", "trainer.profiler", "trainer.enable_autolog_hparams",
                "trainer.model_registry", "trainer.num_sanity_val_steps", "data.root",
                "data.num_workers", "data.download", "data.cache_dir", "data.eval_batch_size",
                "data.progress", "ckpt_path", "weights_only", "test_after_fit")


class RecordError(ValueError):
    """A run record that exists but cannot be read: truncated, not JSON, or missing keys."""


class CheckpointError(ValueError):
    """A checkpoint torch.load(weights_only=True) cannot read, or refuses (`refused`)."""

    def __init__(self, path: Run, reason: str, refused: bool = False):
        super().__init__(f"{path}: {reason}")
        self.reason, self.refused = reason, refused


def default_run_dir(model: str, seed: int | None) -> Path:
    """runs/<model>-seed<seed>: stable, so `--ckpt_path last` finds the run again."""
    return Path("runs") / f"{model}-seed{'none' if seed is None else seed}"


def run_identity(spec, seed: int | None, max_epochs: int | None) -> dict:
    """What a run is, as every record names it: the resolved model (a `ModelSpec`), seed, epochs."""
    return {"model": spec.name, "family": spec.family, "model_args": spec.args,
            "depth": spec.args.get("depth"), "widen_factor": spec.args.get("widen_factor", 1),
            "dropout": spec.args.get("dropout", 0.0), "seed": seed, "max_epochs": max_epochs}


def run_settings(config: dict) -> dict[str, Any]:
    """Every value of a parsed `wrn fit` config that changes what the run computes, flat and
    sorted, as JSON gives it back (tuples become lists), so records compare equal."""
    def walk(node: dict, prefix: str):
        for key, value in node.items():
            name = prefix + key
            if name in NOT_SETTINGS:
                continue
            if isinstance(value, dict) and value:
                yield from walk(value, name + ".")
            else:
                yield name, value

    return json.loads(json.dumps(dict(sorted(walk(config, ""))), default=str))


def settings_difference(recorded: dict[str, Any], planned: dict[str, Any]) -> list[str]:
    missing = "<unset>"
    return [f"{key}: {recorded.get(key, missing)!r} -> {planned.get(key, missing)!r}"
            for key in sorted(recorded.keys() | planned.keys())
            if recorded.get(key, missing) != planned.get(key, missing)]


def refuse_other_settings(run: Run, settings: dict[str, Any]) -> None:
    record = read_record(run)  # damaged: the resume rewrites it
    differences = settings_difference(record["settings"], settings) if "settings" in record else []
    if differences:
        raise ValueError(f"{run} holds a run trained with other settings ({'; '.join(differences)});"
                         " a run folder is never reused for another run: pass another "
                         "--trainer.default_root_dir, or delete the folder to redo it")


def record_path(run: Run) -> Path:
    return Path(run) / METRICS


def read_metrics(run: Run) -> dict | None:
    """metrics.json; None when the run never wrote one, RecordError when it is damaged."""
    path = record_path(run)
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


def read_record(run: Run) -> dict:
    """metrics.json; {} when the run never wrote one or it is damaged."""
    try:
        return read_metrics(run) or {}
    except RecordError:
        return {}


def write_metrics(run: Run, record: dict) -> None:
    atomic_write_json(record_path(run), record)


def record_signature(run: Run) -> tuple | None:
    """Tells one version of metrics.json from the next (every rewrite is a new inode)."""
    try:
        stat = record_path(run).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def result_records(run: Run, record: dict, read: Callable[[Path], dict | None]) -> list[tuple[Path, dict]]:
    """What a run counts as in results: (its folder, its record), or for a fused run (folder,
    record) of each copy, with the run's status and error; its own when a copy has no record."""
    copies = [(Path(run) / name, read(Path(run) / name)) for name in record.get("copy_dirs") or []]
    if not copies or any(copy is None for _, copy in copies):
        return [(Path(run), record)]
    ending = {"status": record["status"], "error": record.get("error")}
    return [(folder, {**copy, **ending}) for folder, copy in copies]


def read_epochs(run: Run) -> tuple[list[dict], list[str]]:
    return read_jsonl(Path(run) / EPOCHS)


def append_epoch(run: Run, line: dict) -> None:
    append_jsonl(Path(run) / EPOCHS, line)


def drop_epochs_from(run: Run, first_epoch: int) -> None:
    """epochs.jsonl without its lines for epochs >= first_epoch (what a resumed run redoes);
    unreadable lines stay for `read_jsonl` to report."""
    path = Path(run) / EPOCHS
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


def read_config(run: Run) -> dict | None:
    """config.yaml as a mapping; None when it cannot be read."""
    import yaml

    try:
        config = yaml.safe_load((Path(run) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def write_config(folder: Run, text: str) -> None:
    atomic_write_text(Path(folder) / CONFIG, text)


def copy_dir(run: Run, seed: int) -> Path:
    return Path(run) / f"{COPY_PREFIX}{seed}"


def is_copy_dir(folder: Run) -> bool:
    name = Path(folder).name
    return name.startswith(COPY_PREFIX) and name[len(COPY_PREFIX):].isdigit()


def new_evaluation_dir(run: Run, command: str) -> Path:
    """RUN/eval/<command>-<YYYYmmdd-HHMMSS>[-n]: a new folder for each evaluation."""
    base = Path(run) / EVAL / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def write_evaluation(folder: Run, record: dict) -> None:
    atomic_write_json(Path(folder) / EVALUATION, record)


def checkpoints_dir(run: Run) -> Path:
    return Path(run) / CHECKPOINTS


def best_checkpoint(run: Run) -> Path:
    return checkpoints_dir(run) / BEST


def resume_checkpoint(run: Run) -> Path | None:
    path = checkpoints_dir(run) / LAST
    return path if path.is_file() else None


def save_checkpoint(checkpoint: dict, path: Run) -> None:
    """The checkpoint through `atomic_file` (a last.ckpt being replaced is kept as
    previous-last.ckpt); FloatingPointError, writing nothing, when its weights are not finite.
    Serialised in memory first, so that a full disk is the OSError it is (torch's own zip writer
    reports it as an unexplained RuntimeError)."""
    import torch

    path = Path(path)
    weights = [t for t in (checkpoint.get("state_dict") or {}).values()
               if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if weights and not bool(torch.stack([torch.isfinite(t).all() for t in weights]).all()):
        raise FloatingPointError(f"weights became NaN/inf: refusing to write the checkpoint {path}")
    previous = path.with_name(PREVIOUS_LAST) if path.name == LAST else None
    try:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        with atomic_file(path, keep_previous=previous) as f:
            f.write(buffer.getbuffer())
    except OSError as exc:
        if exc.filename is None and exc.errno:  # a write into the open file: name the checkpoint
            raise OSError(exc.errno, os.strerror(exc.errno), str(path)) from None
        raise


def load_checkpoint(path: Run) -> Any:
    """torch.load(weights_only=True) on the CPU; CheckpointError naming the file when it cannot."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable or refused: one line naming the file
        reason = checkpoint_load_error(exc)
        if reason is None:
            raise
        raise CheckpointError(path, reason, refused=isinstance(exc, pickle.UnpicklingError)) from None


def resolve_last(run: Run) -> str | None:
    """What `--ckpt_path last` resumes from: last.ckpt, else (with a warning) previous-last.ckpt,
    else None (start over); an unreadable file is kept as damaged-<name>. 'last' when there is no
    checkpoint yet. A file the safe loader refuses raises: it is never silently skipped."""
    folder = checkpoints_dir(run)
    candidates = [path for path in (folder / LAST, folder / PREVIOUS_LAST) if path.exists()]
    if not candidates:
        return "last"
    for index, path in enumerate(candidates):
        try:
            load_checkpoint(path)
            return str(path)
        except CheckpointError as exc:
            if exc.refused:
                raise
            reason = exc.reason
        following = f"resuming from {candidates[index + 1].name}" if index + 1 < len(candidates) \
            else "no whole checkpoint left: starting over"
        damaged = path.with_name(f"damaged-{path.name}")
        os.replace(path, damaged)
        warnings.warn(f"{path} is unreadable ({reason}), kept as {damaged.name}; {following}",
                      stacklevel=2)
    return None


def resolve_ckpt_path(ckpt_path: str, run: Run) -> str | None:
    """--ckpt_path as Lightning will load it: the run's own last checkpoint ('last', or its path)
    through `resolve_last`; a folder or an empty file is a ValueError naming it."""
    own_last, path = checkpoints_dir(run) / LAST, Path(ckpt_path)
    if ckpt_path == "last" or (path.exists() and own_last.exists() and path.resolve() == own_last.resolve()):
        return resolve_last(run)
    if path.is_dir():
        raise ValueError(f"--ckpt_path is a directory: {ckpt_path}; give a checkpoint file "
                         f"(e.g. {checkpoints_dir(path) / LAST}) or 'last'")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"--ckpt_path {ckpt_path}: checkpoint is empty or truncated (an empty file)")
    return ckpt_path


def trained_checkpoint(path: Run) -> Path:
    """A checkpoint file as given; for a run folder its best.ckpt, else its last.ckpt."""
    path = Path(path)
    if path.is_dir():
        for folder in (checkpoints_dir(path), path):
            for name in (BEST, LAST):
                if (folder / name).is_file():
                    return folder / name
        raise ValueError(f"{path}: no {CHECKPOINTS}/{BEST} or {CHECKPOINTS}/{LAST} in this run directory")
    if not path.exists():
        raise ValueError(f"{path}: no such run directory or checkpoint file")
    return path


@dataclass(frozen=True)
class RunState:
    state: str  # new | running | finished | interrupted | failed
    detail: str = ""


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "-"


def run_state(run: Run) -> RunState:
    """What a run folder says about its run, without changing it."""
    if is_locked(run):
        return RunState(RUNNING, "held by a live process")
    resumable = resume_checkpoint(run) is not None
    try:
        record = read_metrics(run) or {}
    except RecordError as exc:
        return RunState(INTERRUPTED if resumable else NEW, str(exc))
    status = record.get("status")
    if status == FINISHED:
        return RunState(FINISHED, f"best_val_acc {_percent(record.get('best_val_acc'))}")
    if status in (FAILED, INTERRUPTED):
        return RunState(status, record.get("error") or "no reason recorded")
    if resumable or status == RUNNING:
        epochs = f"epoch {record.get('epochs', 0)}/{record.get('max_epochs')}" if record else "no record"
        return RunState(INTERRUPTED, epochs + ("" if resumable else ", no checkpoint: restarts"))
    return RunState(NEW)


def acquire_lock(run: Run) -> IO | None:
    """The run's lock, open and flock'ed, or None when another process holds it. It dies with its
    holders (children given the descriptor hold it too): a killed run never looks busy."""
    Path(run).mkdir(parents=True, exist_ok=True)
    handle = open(Path(run) / LOCK, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def hold_lock(run: Run) -> IO | None:
    """This process's hold on the run (kept open until it ends): its own lock, or the one its
    parent sweep passed down (then None); ValueError naming the folder when another holds it.
    Processes it forks (data loader workers) do not hold it: a killed run frees its folder at once."""
    held = os.environ.get(LOCK_FD_ENV)
    try:
        if held and os.path.samestat(os.fstat(int(held)), (Path(run) / LOCK).stat()):
            os.register_at_fork(after_in_child=lambda: _close(int(held)))
            return None
    except (OSError, ValueError):
        pass
    handle = acquire_lock(run)
    if handle is None:
        raise ValueError(f"{run} is in use: another process is training into it; wait for it to "
                         "end, or pass another --trainer.default_root_dir")
    os.register_at_fork(after_in_child=handle.close)
    return handle


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def is_locked(run: Run) -> bool:
    """Whether a live process holds the run; creates nothing, so a read-only folder works."""
    try:
        handle = open(Path(run) / LOCK, "rb")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False
