"""`--time-budget`: runs start while their estimate fits in what is left, from recorded speeds
and a per-device cost model (docs/sweeps.md, "A time budget")."""

from __future__ import annotations

import functools
import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from wrn import rundir
from wrn.data import DATASETS
from wrn.data.sources import train_images, tree_count
from wrn.sweep.state import RUNS_DIR, run_dir_of

START_SECONDS = 20.0  # process start, imports, data set loading: outside a record's times
EVAL_COST = 1 / 3  # an evaluated image costs about a third of a trained one (forward only)
FIT_PER_STEP = 0.5  # `wrn fit` images/s over the bare step's, where the device measured no pair
DEFAULT_BATCH = 128
FALLBACK_DEVICES = {"H200": "H100"}  # a device with no record of its own: this one's, as a guess
DURATION = re.compile(r"(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s)?")


def parse_duration(text: str) -> float:
    """Seconds in '90s', '9m', '1h30m', '2h', '1.5h'; ValueError naming the text otherwise."""
    match = DURATION.fullmatch(text.strip().lower().replace(" ", ""))
    numbers = match.groups() if match else ()
    seconds = sum(float(n or 0) * unit for n, unit in zip(numbers, (3600, 60, 1)))
    if seconds <= 0:
        raise ValueError(f"--time-budget {text!r}: expected a duration like 90s, 9m, 1h30m or 2h")
    return seconds


def device_key(device: str | None) -> str | None:
    """'cpu' for any CPU ('cpu (2 threads)', 'CPU AMD EPYC'), a GPU's name without its count."""
    if not device:
        return None
    return "cpu" if device.lower().startswith("cpu") else re.sub(r" x\d+$", "", device)


@functools.lru_cache(maxsize=256)
def model_cost(model: str, args: str = "{}") -> tuple[int, int]:
    """(multiply-adds per image, residual units) of a model (its arguments as JSON), analytic."""
    from wrn.models import resolve_model
    from wrn.models.resnet import analytic_cost

    config = resolve_model(model, **json.loads(args)).config()
    return analytic_cost(config).macs, 3 * config.units_per_stage


@dataclass(frozen=True)
class Speed:
    """One recorded training speed: images/s of all copies of a model on a device."""

    model: str
    copies: int
    device: str
    images_per_sec: float
    batch: int = DEFAULT_BATCH
    step: bool = False  # a bare training step (benchmarks/), not `wrn fit`
    args: str = "{}"  # the model's arguments, as JSON

    @property
    def x(self) -> tuple[float, float]:
        """The cost model's inputs: multiply-adds per image, launches per image."""
        macs, units = model_cost(self.model, self.args)
        return float(macs), units / (self.batch * self.copies)


def speeds_in(data) -> list[Speed]:
    """The speeds a JSON document records: a run's metrics.json (a `wrn fit` speed), a
    benchmarks/throughput.py record (bare steps; eager only, as `wrn fit` runs), or a
    benchmarks/fit_vs_step.py record (both)."""
    if not isinstance(data, dict) or not device_key(data.get("device")):
        return []
    device = device_key(data["device"])
    if data.get("images_per_sec") and data.get("model"):
        args = {k: v for k, v in (data.get("model_args") or {}).items() if v is not None}
        batch = (data.get("settings") or {}).get("data.batch_size") or DEFAULT_BATCH
        return [Speed(data["model"], int(data.get("copies") or 1), device, float(data["images_per_sec"]),
                      int(batch), args=json.dumps(args, sort_keys=True))]
    speeds, eager = [], data.get("compile") in (None, False, "none")
    for row in (data.get("models") or []) if eager else []:
        if "images_per_sec_ours" in row:
            speeds.append(Speed(row["model"], 1, device, row["images_per_sec_ours"], row["batch"], True))
            speeds += [Speed(row["model"], f["copies"], device, f["images_per_sec_fused"], row["batch"], True)
                       for f in row.get("fused") or []]
        elif "fit_images_per_sec" in row:
            speeds += [Speed(row["name"], 1, device, row["step_images_per_sec"], row["batch_size"], True),
                       Speed(row["name"], 1, device, row["fit_images_per_sec"], row["batch_size"])]
    return [speed for speed in speeds if speed.images_per_sec > 0]


def read_speeds(folder: Path, recursive: bool = True) -> list[Speed]:
    paths = Path(folder).rglob("*.json") if recursive else Path(folder).glob(f"*/{rundir.METRICS}")
    speeds = []
    for path in sorted(paths):
        if rundir.is_copy_dir(path.parent):  # a fused run's copy: part of its run's record
            continue
        try:
            speeds += speeds_in(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a record of a speed
    return speeds


def _fit_costs(speeds: list[Speed]) -> tuple[float, float]:
    """(a, c) >= 0 of seconds per image = a x MACs + c x units / (batch x copies), least squares
    on relative errors; one term alone where both would not be positive."""
    x = np.array([speed.x for speed in speeds])
    t = np.array([1.0 / speed.images_per_sec for speed in speeds])
    rows, target = x / t[:, None], np.ones(len(t))  # relative errors: each observation weighs 1
    candidates = []
    if len(speeds) > 1:
        both = np.linalg.lstsq(rows, target, rcond=None)[0]
        if (both > 0).all():
            candidates.append(both)
    for column in (0, 1):
        alone = np.zeros(2)
        alone[column] = target @ rows[:, column] / max(rows[:, column] @ rows[:, column], 1e-300)
        candidates.append(alone)
    return tuple(min(candidates, key=lambda ac: float(((rows @ ac - target) ** 2).sum())))


@dataclass
class SpeedBook:
    """Recorded training speeds: fixed ones (--speeds folders) and the sweep's own run records
    (re-read on `refresh`, so a run's first epoch calibrates the next estimates)."""

    folders: tuple[Path, ...]
    out_dir: Path | None = None
    _fixed: list = field(default_factory=list)
    _own: list = field(default_factory=list)

    def __post_init__(self) -> None:
        for folder in self.folders:
            if not Path(folder).is_dir():
                raise ValueError(f"--speeds {folder}: no such folder")
            self._fixed += read_speeds(Path(folder))
        self.refresh()

    def refresh(self) -> None:
        self._own = read_speeds(Path(self.out_dir) / RUNS_DIR, recursive=False) if self.out_dir else []

    def rate(self, model: str, args: dict, copies: int, device: str, batch: int = DEFAULT_BATCH
             ) -> tuple[float, str] | None:
        """(images/s of all copies, how it was found) of a run on `device`; None when nothing
        recorded can tell."""
        speeds = [s for s in self._fixed + self._own if s.device == device]
        source = ""
        if not speeds:
            guess = next((other for key, other in FALLBACK_DEVICES.items() if key in device), None)
            speeds = [s for s in self._fixed + self._own if guess and guess in s.device]
            if not speeds:
                return None
            source = f"; {speeds[0].device} records as a first guess for {device}"
        fits = [s for s in speeds if not s.step]
        same = [s.images_per_sec for s in fits if s.model == model and s.copies == copies]
        if same:
            return statistics.median(same), f"{len(same)} record(s) of this model{source}"
        ratio = self._fit_per_step(speeds)
        fitted = {(s.model, s.copies) for s in fits}
        steps = [Speed(s.model, s.copies, s.device, s.images_per_sec * ratio, s.batch, False, s.args)
                 for s in speeds if s.step and (s.model, s.copies) not in fitted]
        a, c = _fit_costs(fits + steps)
        macs, launches = Speed(model, copies, device, 1.0, batch, args=json.dumps(args, sort_keys=True)).x
        how = [f"{len(fits)} `wrn fit` record(s)"] if fits else []
        how += [f"{len(steps)} bare-step record(s) x {ratio:.2f} fit/step"] if steps else []
        return 1.0 / (a * macs + c * launches), f"scaled by cost from {' and '.join(how)}{source}"

    @staticmethod
    def _fit_per_step(speeds: list[Speed]) -> float:
        fit = {(s.model, s.copies): s.images_per_sec for s in speeds if not s.step}
        ratios = [fit[(s.model, s.copies)] / s.images_per_sec for s in speeds
                  if s.step and (s.model, s.copies) in fit]
        return statistics.median(ratios) if ratios else FIT_PER_STEP


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
    dataset, val = settings.get("data.dataset", "cifar10"), int(settings.get("data.val_size") or 0)
    root = Path(data_root).expanduser() if data_root else None
    train = train_images(dataset, root, settings.get("data.subset"),
                         int(settings.get("model.num_classes") or 10))
    if root is not None and tree_count(root / "train", settings.get("data.subset")) is not None:
        test = tree_count(root / "test") or 0
    else:  # no tree: the data set's own size (torchvision files, or not there yet)
        test = DATASETS.get(dataset, DATASETS["cifar10"]).test_images
    return Workload(int(settings.get("trainer.max_epochs") or 0), max(0, train - val), val, test,
                    int(settings.get("model.copies") or 1))


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: no estimate
    basis: str  # how it was made, or why there is none


@dataclass
class Budget:
    """The deadline and the clock (injectable, for tests) a sweep keeps to."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def left(self) -> float:
        return self.started + self.seconds - self.clock()

    def spent(self) -> bool:
        return self.left() <= 0

    def fits(self, seconds: float | None) -> bool:
        """An estimate fits when it ends within what is left; no estimate fits while any is left."""
        return not self.spent() and (seconds is None or seconds <= self.left())


@dataclass
class Estimator:
    """Estimates for the runs of one sweep; `refresh` after a run ends adds its speed."""

    book: SpeedBook
    sweep_device: str | None  # a GPU's name, 'cpu', or None when unknown (an external Ray cluster)

    def __call__(self, run) -> Estimate:  # run: wrn.sweep.plan.PlannedRun
        on_cpu = run.settings.get("trainer.accelerator") == "cpu"
        device = device_key("cpu" if on_cpu else self.sweep_device)
        if device is None:
            return Estimate(None, "no estimate: the device is not known here")
        load = workload(run.settings, run.data_root)
        args = {k: v for k, v in run.identity["model_args"].items() if v is not None}
        found = self.book.rate(run.identity["model"], args, load.copies, device,
                               int(run.settings.get("data.batch_size") or DEFAULT_BATCH))
        if found is None:
            return Estimate(None, f"no estimate: nothing recorded on {device} yet (its first epoch "
                                  "will tell)")
        done = 0
        if self.book.out_dir is not None:
            record = rundir.read_record(run_dir_of(self.book.out_dir, run.run_id))
            done = int(record.get("epochs") or 0) if record.get("status") != "finished" else 0
        rate, how = found
        epochs_left = max(0, load.epochs - done)
        epochs = f"{epochs_left} epoch{'' if epochs_left == 1 else 's'}"
        fused = f" x{load.copies} copies" if load.copies > 1 else ""
        shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.2g}"
        return Estimate(START_SECONDS + load.images(epochs_left) / rate,
                        f"{epochs} x {load.train:,} images{fused} at {shown} img/s ({how})")

    def refresh(self) -> None:
        self.book.refresh()
