"""`--time-budget`: a run starts only when its estimate (from recorded speeds) fits in what is
left; at the end, runs still going are stopped, resumable, and the next invocation goes on.
"""

from __future__ import annotations

import functools
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from wrn import rundir
from wrn.data import DATASETS
from wrn.data.sources import IMAGE_SUFFIXES
from wrn.sweep.state import RUNS_DIR, run_dir_of

START_SECONDS = 20.0  # process start, imports, data set loading: outside a record's times
EVAL_COST = 1 / 3  # an evaluated image costs about a third of a trained one (forward only)
DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)([hms])")
UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in '90s', '9m', '1h30m', '2h', '1.5h'; ValueError naming the text otherwise."""
    compact = text.strip().lower().replace(" ", "")
    parts = DURATION_PART.findall(compact)
    units = [unit for _, unit in parts]
    valid = (parts and "".join(n + u for n, u in parts) == compact and len(set(units)) == len(units)
             and units == sorted(units, key="hms".index))
    seconds = sum(float(number) * UNIT_SECONDS[unit] for number, unit in parts) if valid else 0.0
    if not valid or seconds <= 0:
        raise ValueError(f"--time-budget {text!r}: expected a duration like 90s, 9m, 1h30m or 2h")
    return seconds


def device_key(device: str | None) -> str | None:
    """'cpu' for any CPU record ('cpu (2 threads)'), the GPU's name for a GPU one ('NVIDIA H100
    80GB HBM3 x1' -> 'NVIDIA H100 80GB HBM3')."""
    if not device:
        return None
    if device.startswith("cpu"):
        return "cpu"
    return re.sub(r" x\d+$", "", device)


@dataclass
class SpeedBook:
    """Recorded training speeds: (model, copies, device key) -> images/s of each record."""

    folders: tuple[Path, ...]  # searched recursively for metrics.json
    out_dir: Path | None = None  # a sweep's output: OUT/runs/*/metrics.json, re-read on refresh
    _fixed: dict = field(default_factory=dict)
    _own: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for folder in self.folders:
            if not Path(folder).is_dir():
                raise ValueError(f"--speeds {folder}: no such folder")
            self._add(self._fixed, rundir.find_records(folder))  # eager-metrics.json too
        self.refresh()

    def refresh(self) -> None:
        """Re-read the sweep's own records (after a run ended: its speed is known now)."""
        self._own = {}
        if self.out_dir is not None:
            self._add(self._own, rundir.find_records(Path(self.out_dir) / RUNS_DIR, recursive=False))

    @staticmethod
    def _add(book: dict, records) -> None:
        for record in records:
            try:
                rate = float(record["images_per_sec"])
            except (ValueError, KeyError, TypeError):
                continue  # no speed in it (yet): not a source
            key = (record.get("model"), int(record.get("copies") or 1), device_key(record.get("device")))
            if rate > 0 and all(key):
                book.setdefault(key, []).append(rate)

    def rate(self, model: str, copies: int, device: str | None) -> tuple[float, int] | None:
        """(median images/s, records) of that model, copies and device; None when unrecorded."""
        rates = [*self._fixed.get((model, copies, device), []), *self._own.get((model, copies, device), [])]
        return (statistics.median(rates), len(rates)) if rates else None


@functools.lru_cache(maxsize=64)
def _tree_count(folder: str, per_class: int | None) -> int | None:
    """Images under folder/<class>/, at most per_class each; None when there is no such tree."""
    root = Path(folder)
    if not root.is_dir():
        return None
    total = 0
    for entry in os.scandir(root):
        if entry.is_dir():
            count = sum(1 for f in os.scandir(entry.path) if f.name.lower().endswith(IMAGE_SUFFIXES))
            total += count if per_class is None else min(count, per_class)
    return total or None


@dataclass(frozen=True)
class Workload:
    """Images one epoch of a run trains and validates on, the test images it ends with, and how
    many fused copies see each image."""

    epochs: int
    train: int
    val: int
    test: int
    copies: int

    def images(self, epochs_left: int) -> float:
        per_epoch = self.train + EVAL_COST * self.val
        return self.copies * (epochs_left * per_epoch + EVAL_COST * 2 * self.test)


def workload(settings: dict, data_root: str | None) -> Workload:
    """From a run's settings (wrn.rundir.run_settings) and its data root."""
    dataset = settings.get("data.dataset", "cifar10")
    subset, val = settings.get("data.subset"), int(settings.get("data.val_size") or 0)
    facts = DATASETS.get(dataset, DATASETS["cifar10"])
    nominal_train, nominal_test = facts.train_images, facts.test_images
    root = Path(data_root).expanduser() if data_root else None
    train = _tree_count(str(root / "train"), subset) if root else None
    test = _tree_count(str(root / "test"), None) if root else None
    if train is None:  # no tree: the data set's own size (torchvision files, or not there yet)
        classes = int(settings.get("model.num_classes") or 10)
        train = nominal_train if subset is None else min(nominal_train, subset * classes)
        test = nominal_test
    return Workload(int(settings.get("trainer.max_epochs") or 0), max(0, train - val), val,
                    test or 0, int(settings.get("model.copies") or 1))


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: no estimate
    basis: str  # how it was made, or why there is none


def estimate(book: SpeedBook, model: str, device: str | None, load: Workload,
             epochs_done: int = 0) -> Estimate:
    epochs_left = max(0, load.epochs - epochs_done)
    if device is None:
        return Estimate(None, "no estimate: the device is not known here")
    found = book.rate(model, load.copies, device)
    fused = f" x{load.copies} copies" if load.copies > 1 else ""
    if found is None:
        return Estimate(None, f"no estimate: no record of {model}{fused} on {device}")
    rate, records = found
    seconds = START_SECONDS + load.images(epochs_left) / rate
    epochs = f"{epochs_left} epoch{'' if epochs_left == 1 else 's'}"
    return Estimate(seconds, f"{epochs} x {load.train:,} images{fused} at "
                             f"{rate:,.0f} img/s ({records} record{'s' if records > 1 else ''})")


@dataclass
class Budget:
    """The deadline and the clock (injectable, for tests) a sweep keeps to."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float | None = None

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    def left(self) -> float:
        return self.started + self.seconds - self.clock()

    def spent(self) -> bool:
        return self.left() <= 0

    def fits(self, seconds: float | None) -> bool:
        """An estimate fits when it ends within what is left; no estimate fits while any is left."""
        return not self.spent() and (seconds is None or seconds <= self.left())


def run_device(settings: dict, sweep_device: str | None) -> str | None:
    """Where a run trains: 'cpu' when its config says so or the sweep has no GPU, else the
    sweep's GPU name; None when unknown (an external Ray cluster)."""
    if settings.get("trainer.accelerator") == "cpu":
        return "cpu"
    return sweep_device


@dataclass
class Estimator:
    """Estimates for the runs of one sweep; `refresh` after a run ends adds its speed."""

    book: SpeedBook
    sweep_device: str | None  # a GPU's name, 'cpu', or None when unknown

    def __call__(self, run) -> Estimate:  # run: wrn.sweep.plan.PlannedRun
        done = 0
        if self.book.out_dir is not None:
            try:
                record = rundir.read_metrics(run_dir_of(self.book.out_dir, run.run_id)) or {}
            except rundir.RecordError:
                record = {}
            done = int(record.get("epochs") or 0) if record.get("status") != "finished" else 0
        device = run_device(run.settings, self.sweep_device)
        return estimate(self.book, run.identity["model"], device,
                        workload(run.settings, run.data_root), done)

    def refresh(self) -> None:
        self.book.refresh()
