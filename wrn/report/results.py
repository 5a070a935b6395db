"""results.csv: its one schema, reader (every number checked) and writer, the mean ± std of each
configuration over its seeds, the Pareto front, and the display names of models and datasets (no
plotting library needed: tables use them too). An empty cell is a value the run did not record."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

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
write_results = atomic_write_text  # whole: a reader or a kill never sees half a file
# Baselines first and WRN last, as in the WRN paper's tables; also the legend order.
FAMILY_ORDER = ("plain", "resnet", "preact-resnet", "wrn")
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
    texts["config"] = texts["config"] or f"{texts['model']} dropout={numbers['dropout']:g}"
    run_dir = texts.pop("run_dir")
    return Run(**texts, **whole, **numbers, run_dir=base / run_dir if run_dir else None)


def read_runs(path: str | Path) -> list[Run]:
    """Every row of a results.csv (any status), checked; ResultsError names the first bad row."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: results file not found")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ResultsError(f"{path}: missing required column(s): {', '.join(missing)}")
            # line_num, not a counter: quoted error messages may span several lines.
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ResultsError(f"{path}: not a readable CSV file ({type(exc).__name__}: {exc})") from None
    return [parse_run(row, f"{path}:{line}", path.parent) for line, row in rows]


@dataclass(frozen=True)
class Results:
    runs: tuple[Run, ...]  # finished runs only
    notes: list[str]  # for a reader of the figures or tables: rows left out, the split used


def load_results(path: str | Path) -> Results:
    runs = read_runs(path)
    statuses = Counter(run.status for run in runs)
    finished = tuple(run for run in runs if run.status == FINISHED)
    if not finished:
        seen = ", ".join(f"{n} {s or 'blank'}" for s, n in statuses.items()) or "no rows"
        raise ResultsError(f"{path}: no finished runs ({seen})")
    left_out = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()) if status != FINISHED)
    notes = [left_out and f"only finished runs are used; left out {left_out}", metric_note(finished)]
    return Results(finished, [note for note in notes if note])


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
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
    images_per_sec: float | None
    runs: tuple[Run, ...]


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def stats(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def by_config(runs: Iterable[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.config, []).append(run)
    return groups


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """One Group per `config`, in first-appearance order. The errors come from test_acc when every run
    has it, else from best_val_acc for all: never test beside validation."""
    metric = next((m for m in SPLIT_OF_METRIC if all(getattr(r, m) is not None for r in runs)), None)
    if metric is None:
        lacking = next(run for run in runs if run.best_val_acc is None)
        raise ResultsError(f"run {lacking.config!r} seed {lacking.seed or '?'} has no best_val_acc, "
                           "and not every run has test_acc")
    groups = []
    for config, members in by_config(runs).items():
        mean, std = stats([100.0 * (1.0 - getattr(r, metric)) for r in members])
        first = members[0]
        groups.append(Group(
            config, first.model, first.family, first.depth, first.widen_factor, first.dropout,
            _mean(r.params for r in members), _mean(r.macs for r in members), metric, mean, std,
            len(members), _mean(r.wall_seconds for r in members),
            _mean(r.images_per_sec for r in members), tuple(members)))
    return groups


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
    """One Group per `config`, sorted by family (baselines first) then parameter count."""
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
