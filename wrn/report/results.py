"""results.csv: its one schema, reader (every number checked) and writer; the mean ± std of each
configuration over its seeds, the Pareto front, what the runs were, and the display names of
models and datasets. An empty cell is a value the run did not record. The reader also takes run
folders (one row per copy of a fused run) and several sources at once, each named by a label."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from wrn import rundir
from wrn.data import DATASETS  # the table alone: importing it loads neither torch nor Lightning
from wrn.files import atomic_write_text

RESULTS_FILE = "results.csv"
# A run's fields, then one column per swept key.
RESULT_COLUMNS = ("run_id", "config", "status", "error", "model", "family", "depth", "widen_factor",
                  "dropout", "seed", "params", "macs", "best_val_acc", "final_val_acc", "test_acc",
                  "test_acc_best", "epochs", "wall_seconds", "images_per_sec", "device", "run_dir")
REQUIRED_COLUMNS = ("config", "status", "model", "family", "depth", "widen_factor", "dropout",
                    "params", "macs", "best_val_acc")
ACCURACIES = ("best_val_acc", "final_val_acc", "test_acc", "test_acc_best")  # fractions in [0, 1]
AMOUNTS = ("params", "macs", "epochs", "wall_seconds", "images_per_sec")  # finite, >= 0
# The accuracy an error comes from, and the words that name its split on every axis and column.
SPLIT_OF_METRIC = {"test_acc": "test", "best_val_acc": "best validation"}
FINISHED = "finished"
# Run settings that tell the seeds of one configuration apart, not configurations.
SEED_SETTINGS = ("seed_everything", "model.seed", "data.seed", "model.copies", "data.copies")
write_results = atomic_write_text  # whole: a reader or a kill never sees half a file
# Baselines first and WRN last, as in the WRN paper's tables; also the legend order.
FAMILY_ORDER = ("plain", "resnet", "preact-resnet", "wrn")
MAX_CONFIGS_READ = 50  # config.yaml files read: the first run of each configuration, up to this
DATASET_NAMES = {name: facts.title for name, facts in DATASETS.items()}
_MODEL_PREFIXES = (  # longest first: "preact-resnet-" also ends in "resnet-"
    ("preact-resnet-", "preact-resnet", "pre-act ResNet-"),
    ("resnet-", "resnet", "ResNet-"),
    ("wrn-", "wrn", "WRN-"),
    ("plain-", "plain", "plain-"),
)


class ResultsError(ValueError):
    """A results file that cannot be used: missing, lacking columns, bad numbers, no finished runs."""


@dataclass(frozen=True)
class Run:
    config: str
    status: str
    model: str
    family: str
    depth: int | None
    widen_factor: int | None
    dropout: float
    seed: str
    params: float | None
    macs: float | None  # fvcore multiply-adds per 32x32 image
    best_val_acc: float | None
    final_val_acc: float | None
    test_acc: float | None  # final weights on the test split
    test_acc_best: float | None  # best-validation checkpoint on the test split
    epochs: float | None
    wall_seconds: float | None
    images_per_sec: float | None
    device: str
    run_dir: Path | None
    error: str
    source: str = ""  # the label of the results it was read from


def _number(value: Any, column: str, where: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ResultsError(f"{where}: {column} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise ResultsError(f"{where}: {column} is {value!r}; a recorded number must be finite")
    if column in ACCURACIES and not 0.0 <= number <= 1.0:
        raise ResultsError(f"{where}: {column} = {value} is outside [0, 1] (accuracies are fractions)")
    if number < 0 and column in AMOUNTS:
        raise ResultsError(f"{where}: {column} = {value} is negative")
    return number


def parse_run(row: Mapping[str, Any], where: str, base: Path) -> Run:
    """A results row (CSV text or record values) as a Run, run_dir taken relative to `base`."""
    numbers = {c: _number(row.get(c), c, where) for c in (*ACCURACIES, *AMOUNTS, "dropout")}
    whole = {c: None if (n := _number(row.get(c), c, where)) is None else int(n)
             for c in ("depth", "widen_factor")}
    texts = {c: "" if (v := row.get(c)) is None else str(v).strip()
             for c in ("config", "status", "model", "family", "seed", "device", "error", "run_dir")}
    numbers["dropout"] = numbers["dropout"] or 0.0
    texts["config"] = texts["config"] or config_name(texts["model"], numbers["dropout"])
    run_dir = texts.pop("run_dir")
    return Run(**texts, **whole, **numbers, run_dir=base / run_dir if run_dir else None)


def _numbered_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    """(first line, row) of every row, each as wide as the header, each run_id once."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    width = len(reader.fieldnames or [])
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ResultsError(f"{path}: missing required column(s): {', '.join(missing)}")
    rows, end, seen = [], reader.line_num, {}
    for row in reader:  # line_num, not a counter: quoted error messages may span several lines
        line, end, run_id = end + 1, reader.line_num, (row.get("run_id") or "").strip()
        cells = width + len(row.get(None, ())) - list(row.values()).count(None)
        if cells != width:
            raise ResultsError(f"{path}:{line}: row has {cells} cells, the header {width}")
        if run_id in seen:
            raise ResultsError(f"{path}: run {run_id!r} is on line {seen[run_id]} and again on line {line}")
        seen.update({run_id: line} if run_id else {})
        rows.append((line, row))
    if rows and not text.endswith("\n"):
        raise ResultsError(f"{path}:{rows[-1][0]}: row cut short (the file ends in the middle of it)")
    return rows


def read_runs(path: str | Path) -> list[Run]:
    """Every row of a results.csv (any status), checked; ResultsError names the first bad row."""
    path = Path(path)
    try:
        rows = _numbered_rows(path, path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResultsError(f"{path}: not a readable CSV file ({type(exc).__name__}: {exc})") from None
    return [parse_run(row, f"{path}:{line}", path.parent) for line, row in rows]


def config_name(model: str, dropout: float) -> str:
    """The configuration of a run of its own, not of a sweep."""
    return f"{model} dropout={dropout:g}"


def _record(folder: Path) -> dict:
    try:
        record = rundir.read_metrics(folder)
    except rundir.RecordError as exc:
        raise ResultsError(str(exc)) from None
    if record is None:
        raise ResultsError(f"{rundir.record_path(folder)}: no run record")
    return record


def _name_configs(rows: Sequence[dict]) -> None:
    """Each row's `config`: its model and dropout, then the settings (seeds aside) that differ
    between the rows of that model and dropout: other settings are never taken for seeds."""
    named: dict[str, list[dict]] = {}
    for row in rows:
        named.setdefault(config_name(row["model"], float(row.get("dropout") or 0.0)), []).append(row)
    for name, members in named.items():
        settings = [{k: json.dumps(v) for k, v in (m.get("settings") or {}).items() if k not in SEED_SETTINGS}
                    for m in members]
        differ = sorted({k for own in settings for k in own if any(o.get(k) != own[k] for o in settings)})
        for member, own in zip(members, settings):
            member["config"] = " ".join([name, *(f"{key}={own.get(key)}" for key in differ)])


def read_source(path: Path) -> tuple[list[Run], list[str]]:
    """Every row (any status) of a results.csv or a folder holding one, of a run folder or its
    record, or of the run folders in a folder; and notes on folders left out and seeds run twice."""
    if path.is_dir() and (path / RESULTS_FILE).is_file():
        path = path / RESULTS_FILE
    if not path.exists():
        raise ResultsError(f"{path}: results file or run folder not found")
    if path.is_file() and path != rundir.record_path(path.parent):
        return read_runs(path), []
    folder = path.parent if path.is_file() else path
    inside = ([folder] if rundir.record_path(folder).is_file()
              else sorted(p for p in folder.iterdir() if p.is_dir()))
    folders = [run for run in inside if rundir.record_path(run).is_file()]
    if not folders:
        raise ResultsError(f"{folder}: no {RESULTS_FILE}, no run record and no run folders in it")
    # A fused run gives a row per copy, each with the run's status.
    rows = [{**fields, "run_dir": str(where)} for run in folders
            for where, fields in rundir.result_records(run, _record(run), _record)]
    _name_configs(rows)
    left_out = ", ".join(p.name for p in inside if p not in folders)
    seeds = Counter((row["config"], row.get("seed")) for row in rows)
    again = ", ".join(f"{config} seed {seed} ({n} runs)" for (config, seed), n in seeds.items() if n > 1)
    notes = [left_out and f"left out the folders without a run record: {left_out}",
             again and f"seeds run more than once, each run counted: {again}"]
    runs = [parse_run(row, str(rundir.record_path(row["run_dir"])), Path()) for row in rows]
    return runs, [note for note in notes if note]


@dataclass(frozen=True)
class Results:
    runs: tuple[Run, ...]  # load_results: finished runs only
    notes: list[str]  # for a reader of the figures or tables: rows left out, the split used
    sources: tuple[str, ...] = ("",)  # their labels, in the order given


def read_sources(paths: Sequence[str | Path], labels: Sequence[str] = ()) -> Results:
    """Every row of every source, labelled (--label, else the folder's name; never two alike)."""
    paths = [Path(p) for p in paths]
    if labels and len(labels) != len(paths):
        raise ResultsError(f"--label given {len(labels)} times for {len(paths)} sources: give it once per "
                           "source, in order, or not at all")
    names = list(labels) or [(p.parent if p.is_file() else p).resolve().name for p in paths]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ResultsError(f"{paths[i]}: labelled {name!r}, as {paths[names.index(name)]} is; "
                               "name the sources with --label")
    runs, notes = [], []
    for path, name in zip(paths, names):
        found, left_out = read_source(path)
        runs += [replace(run, source=name) for run in found]
        notes += [f"{name}: {note}" if len(paths) > 1 else note for note in left_out]
    return Results(tuple(runs), notes, tuple(names))


def load_results(*paths: str | Path, labels: Sequence[str] = ()) -> Results:
    """The finished runs of every source; ResultsError names a source without any."""
    every = read_sources(paths, labels)
    notes = list(every.notes)
    for path, name in zip(paths, every.sources):
        statuses = Counter(run.status for run in every.runs if run.source == name)
        if not statuses[FINISHED]:
            seen = ", ".join(f"{n} {s or 'blank'}" for s, n in statuses.items()) or "no rows"
            raise ResultsError(f"{path}: no finished runs ({seen})")
        left_out = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()) if status != FINISHED)
        notes += [f"{name + ': ' if len(paths) > 1 else ''}only finished runs are used; left out {left_out}"
                  ] if left_out else []
    finished = tuple(run for run in every.runs if run.status == FINISHED)
    return Results(finished, notes + [n for n in [metric_note(finished)] if n], every.sources)


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    return buffer.getvalue()


def results_text(rows: Iterable[Mapping[str, Any]], extra_columns: Sequence[str] = ()) -> str:
    """The CSV text of rows (dicts keyed by column; missing keys are empty cells)."""
    columns = [*RESULT_COLUMNS, *(c for c in extra_columns if c not in RESULT_COLUMNS)]
    return csv_text(columns, ([csv_cell(row.get(column)) for column in columns] for row in rows))


def results_problem(path: Path, expected: str | None = None) -> str | None:
    """Why results.csv cannot be trusted (missing, damaged, outdated, not `expected`), or None."""
    if not path.is_file():
        return "missing"
    try:
        text = path.read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    if not rows or tuple(rows[0][:len(RESULT_COLUMNS)]) != RESULT_COLUMNS:
        readable = rows and set(REQUIRED_COLUMNS) <= set(rows[0])
        return "outdated (written with older columns)" if readable else "corrupt (wrong or missing header)"
    ragged = next((i for i, row in enumerate(rows[1:], 2) if len(row) != len(rows[0])), None)
    if ragged is not None or not text.endswith("\n"):
        return f"corrupt (truncated at line {ragged or len(rows)})"
    return "stale" if expected is not None and text != expected else None


def metric_note(runs: Sequence[Run]) -> str | None:
    """Why test errors were not used although some runs have them; None when nothing to say."""
    with_test = sum(run.test_acc is not None for run in runs)
    return (f"{len(runs) - with_test} of {len(runs)} runs have no test_acc, so every error shown is "
            "a best-validation error") if 0 < with_test < len(runs) else None


@dataclass(frozen=True)
class Group:
    """The seeds of one configuration. Errors are %, std is the sample std (ddof=1), 0 when n=1."""

    config: str
    model: str
    family: str
    depth: int | None
    widen_factor: int | None
    dropout: float
    params: float | None
    macs: float | None  # fvcore multiply-adds per 32x32 image
    metric: str  # "test_acc" or "best_val_acc": which accuracy the error comes from
    error_mean: float
    error_std: float
    n: int
    wall_seconds: float | None
    runs: tuple[Run, ...]
    source: str = ""


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def stats(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def by_config(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.source, run.config), []).append(run)
    return groups


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """One Group per source and `config`, in first-appearance order. The errors come from test_acc
    when every run has it, else from best_val_acc for all: never test beside validation."""
    metric = next((m for m in SPLIT_OF_METRIC if all(getattr(r, m) is not None for r in runs)), None)
    if metric is None:
        lacking = next(run for run in runs if run.best_val_acc is None)
        raise ResultsError(f"run {lacking.config!r} seed {lacking.seed or '?'} has no best_val_acc, "
                           "and not every run has test_acc")
    groups = []
    for (source, config), members in by_config(runs).items():
        mean, std = stats([100.0 * (1.0 - getattr(r, metric)) for r in members])
        first = members[0]
        groups.append(Group(
            config, first.model, first.family, first.depth, first.widen_factor, first.dropout,
            _mean(r.params for r in members), _mean(r.macs for r in members), metric, mean, std,
            len(members), _mean(r.wall_seconds for r in members), tuple(members), source))
    return groups


def _span(values: Iterable[int], unit: str) -> str:
    values = sorted(set(values))
    return f"{values[0]:,} {unit}" if len(values) == 1 else f"{values[0]:,}–{values[-1]:,} {unit}"


def describe_runs(runs: Sequence[Run]) -> str:
    """What the runs were, so that a short smoke sweep does not pass for a full result: e.g.
    'subset: 300 images per class, 500 held out for validation; 6 epochs'."""
    firsts = [members[0] for members in by_config(runs).values()][:MAX_CONFIGS_READ]
    # A fused run's copies keep their records in its folder, beside its one config.yaml.
    configs = [rundir.read_config(r.run_dir.parent if rundir.is_copy_dir(r.run_dir) else r.run_dir)
               for r in firsts if r.run_dir is not None]
    sections = [c["data"] for c in configs if c and isinstance(c.get("data"), dict)]
    parts = []
    if sections:
        subsets = {s.get("subset") for s in sections}
        held = {int(s.get("val_size") or 0) for s in sections}
        what = ("subset: " + _span(subsets, "images per class") if None not in subsets
                else "full training set" if len(subsets) == 1 else "mixed training subsets")
        parts.append(f"{what}, " + ("validated on the test split" if held == {0}
                                    else _span(held, "held out for validation")))
    epochs = [int(r.epochs) for r in runs if r.epochs is not None]
    if epochs:
        parts.append(_span(epochs, "epochs" if max(epochs) > 1 else "epoch"))
    return "; ".join(parts)


def family_rank(family: str) -> int:
    return FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)


def family_of_model(model: str) -> str:
    return next((family for prefix, family, _ in _MODEL_PREFIXES if model.lower().startswith(prefix)), "")


def display_name(model: str, dropout: float = 0.0) -> str:
    """`wrn-28-10` -> `WRN-28-10`, `preact-resnet-164` -> `pre-act ResNet-164`; '+drop' if dropout."""
    name = next((shown + model[len(prefix):] for prefix, _, shown in _MODEL_PREFIXES
                 if model.lower().startswith(prefix)), model)
    return name + ("+drop" if dropout > 0 else "")


def aggregate(runs: Sequence[Run]) -> list[Group]:
    return sorted(group_runs(runs), key=lambda g: (family_rank(g.family), g.params or math.inf, g.config))


def error_split(groups: Sequence[Group]) -> str:
    return SPLIT_OF_METRIC[groups[0].metric] if groups else "test"


def error_label(groups: Sequence[Group]) -> str:
    return f"{error_split(groups)} error (%)"


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, error) points no other beats (<= in both, < in one), by increasing
    cost; non-finite points are never on it, and of exact duplicates only the first is."""
    usable = [i for i, (cost, error) in enumerate(points) if finite(cost) and finite(error)]
    front, best_error = [], math.inf
    for i in sorted(usable, key=lambda i: (points[i][0], points[i][1], i)):
        if points[i][1] < best_error:
            front.append(i)
            best_error = points[i][1]
    return front
