"""wrn sweep run --time-budget: durations, estimates from recorded speeds, what starts, the clean
stop at the end of the budget and the next invocation going on from there.

The scheduling is tested with an injected clock and an executor whose runs take a set time on it;
the stop and the resume with real WRN-10-1 runs on a generated image tree, the clock made to run
out the moment the second run is held at its second epoch (so no test depends on machine speed).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException

from tests import helpers
from tests.helpers import make_image_tree
from tests.test_fit_trust import HOLD_AT
from tests.test_sweep import TINY_RUN, attempts, logs, sweep
from wrn.errors import one_line_error
from wrn.files import atomic_write_json, read_jsonl
from wrn.rundir import read_metrics
from wrn.report.text import duration
from wrn.sweep.budget import (START_SECONDS, Budget, Estimator, Speed, SpeedBook, _fit_costs,
                              device_key, model_cost,
                              parse_duration)
from wrn.sweep.cli import BUDGET_EXIT, _exit_code
from wrn.sweep.executors import LocalExecutor
from wrn.sweep.plan import make_plan
from wrn.sweep.progress import PlainProgress
from wrn.report.results import RESULTS_FILE, results_problem
from wrn.sweep.runner import initial_tally, run_sweep, states
from wrn.sweep.spec import load_spec
from wrn.recorder import ending
from wrn.rundir import FINISHED, INTERRUPTED, NEW
from wrn.sweep.state import Outcome, run_dir_of

RATE = 2.0  # images/s of the recorded WRN-10-1 runs below
# One epoch on the tree: 40 training images, 20 validation images at a third of the cost.
RUN_SECONDS = START_SECONDS + (40 + 20 / 3) / RATE  # 43.3 s


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_image_tree(tmp_path_factory.mktemp("tree"), classes=3, per_class=20)


def speed_record(folder: Path, model: str = "wrn-10-1", rate: float = RATE, **extra) -> Path:
    atomic_write_json(folder / "metrics.json", {"status": "finished", "model": model,
                                                "device": "cpu (2 threads)",
                                                "images_per_sec": rate, **extra})
    return folder


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedExecutor:
    """An Executor whose every run takes `seconds` on the fake clock, then records itself
    finished at RATE; `wait` moves the clock on by its timeout."""

    description = "timed (test)"
    capacity = 1

    def __init__(self, clock: FakeClock, seconds: float):
        self.clock, self.seconds = clock, seconds
        self.going: dict[str, tuple[str, float]] = {}  # run id -> (run dir, start)
        self.started: list[tuple[str, float]] = []
        self.stopped_at: float | None = None

    @property
    def running(self) -> list[str]:
        return list(self.going)

    def has_free_slot(self) -> bool:
        return len(self.going) < self.capacity

    def submit(self, task) -> Outcome | None:
        self.going[task.run_id] = (task.run_dir, self.clock.now)
        self.started.append((task.run_id, self.clock.now))
        return None

    def wait(self, timeout: float) -> list[Outcome]:
        self.clock.now += timeout
        ended = [run_id for run_id, (_, start) in self.going.items()
                 if self.clock.now - start >= self.seconds]
        outcomes = []
        for run_id in ended:
            run_dir, _ = self.going.pop(run_id)
            speed_record(Path(run_dir), epochs=1)
            outcomes.append(Outcome(run_id, FINISHED, None, self.seconds, 0.5))
        return outcomes

    def shutdown(self) -> None:
        if self.going and self.stopped_at is None:
            self.stopped_at = self.clock.now
        status, reason = ending(SIGTERMException())
        for run_dir, _ in self.going.values():  # as a SIGTERMed run leaves it
            atomic_write_json(Path(run_dir) / "metrics.json", {
                "status": status, "model": "wrn-10-1", "epochs": 0, "error": f"{reason} (epoch 0, step 3)"})
        self.going.clear()


def timed_sweep(tmp_path: Path, tree: Path, budget_s: float, run_s: float, speeds: list[Path]):
    spec = helpers.write_spec(tmp_path, TINY_RUN, tree, seeds=[0, 1, 2], points=[{}])
    plan = make_plan(load_spec(spec), [])
    out = tmp_path / "out"
    clock = FakeClock()
    executor = TimedExecutor(clock, run_s)
    status = states(plan, out)
    estimator = Estimator(SpeedBook(tuple(speeds), out), "cpu")
    printed = io.StringIO()
    outcome = run_sweep(plan, out, executor, PlainProgress(initial_tally(plan, status, 1, 1), printed),
                        1, status, Budget(budget_s, clock), estimator)
    return plan, out, executor, outcome, printed.getvalue()


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("9m", 540), ("1h30m", 5400), ("2h", 7200),
                                          ("1h5m30s", 3930), ("1.5h", 5400), (" 10M ", 600)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "9", "9x", "m", "5m1h", "1m1m", "0s", "-5m", "ninem", "1h 30"])
def test_bad_durations_are_one_line_naming_the_text(text, tmp_path, tree):
    with pytest.raises(ValueError, match="--time-budget") as info:
        parse_duration(text)
    assert repr(text) in one_line_error(info.value)


def test_bad_budget_on_the_command_line_runs_nothing(tmp_path, tree):
    spec = helpers.write_spec(tmp_path, TINY_RUN, tree, points=[{}])
    with pytest.raises(ValueError, match="--time-budget '9 minutes'"):
        sweep("run", spec, "--out", tmp_path / "out", "--time-budget", "9 minutes")
    assert not (tmp_path / "out").exists()


def test_device_keys_match_records_across_thread_counts_and_gpu_counts():
    assert device_key("cpu (2 threads)") == device_key("cpu (16 threads)") == "cpu"
    assert device_key("NVIDIA H100 80GB HBM3 x1") == "NVIDIA H100 80GB HBM3"


# ----------------------------------------------------------------------------- scheduling


def test_only_runs_whose_estimate_fits_start_and_the_next_invocation_goes_on(tmp_path, tree):
    speeds = speed_record(tmp_path / "speeds" / "earlier")
    plan, out, executor, outcome, printed = timed_sweep(tmp_path, tree, budget_s=100, run_s=45,
                                               speeds=[tmp_path / "speeds"])
    # 43.3 s estimated each: the first at 0 s, the second at 45 s (55 s left); at 90 s the third
    # would end after the budget, so it is left for the next invocation.
    assert [start for _, start in executor.started] == [0, 45]
    assert (outcome.finished, outcome.failed, outcome.left, outcome.budget_ended) == (2, 0, 1, True)
    assert executor.stopped_at is None  # nothing was running when the budget ran out
    assert _exit_code(outcome) == BUDGET_EXIT
    assert results_problem(out / RESULTS_FILE) is None

    clock = FakeClock()  # the second invocation runs what is left
    executor = TimedExecutor(clock, 45)
    status = states(plan, out)
    assert [s.state for s in status.values()] == [FINISHED, FINISHED, NEW]
    outcome = run_sweep(plan, out, executor, PlainProgress(initial_tally(plan, status, 1, 1),
                                                           io.StringIO()), 1, status,
                        Budget(100, clock), Estimator(SpeedBook((speeds,), out), "cpu"))
    assert [run_id for run_id, _ in executor.started] == [plan.runs[2].run_id]
    assert (outcome.finished, outcome.left, outcome.budget_ended, _exit_code(outcome)) == (3, 0, False, 0)


def test_runs_longer_than_the_whole_budget_are_named_and_never_started(tmp_path, tree):
    speed_record(tmp_path / "speeds")
    plan, out, executor, outcome, printed = timed_sweep(tmp_path, tree, budget_s=30, run_s=45,
                                               speeds=[tmp_path / "speeds"])
    assert executor.started == [] and (outcome.left, outcome.budget_ended) == (3, True)
    assert printed.count("longer than the whole time budget (0m30s)") == 3


def test_an_interrupted_run_longer_than_the_budget_resumes_in_the_next_call(tmp_path, tree):
    # The first call starts a run it cannot estimate and stops it when the budget ends; the next
    # call of the same length, now estimating it (43 s) over its whole budget (30 s), resumes it
    # anyway (its epochs are kept), while new runs that long are only named.
    plan, out, executor, outcome, _ = timed_sweep(tmp_path, tree, budget_s=30, run_s=1000, speeds=[])
    first = plan.runs[0].run_id
    assert executor.started == [(first, 0)] and states(plan, out)[first].state == INTERRUPTED
    clock = FakeClock()
    executor = TimedExecutor(clock, 1000)
    status = states(plan, out)
    printed = io.StringIO()
    outcome = run_sweep(plan, out, executor, PlainProgress(initial_tally(plan, status, 1, 1), printed),
                        1, status, Budget(30, clock),
                        Estimator(SpeedBook((speed_record(tmp_path / "speeds"),), out), "cpu"))
    assert executor.started == [(first, 0)] and executor.stopped_at is not None
    assert printed.getvalue().count("longer than the whole time budget") == 2  # the two new runs
    assert states(plan, out)[first].state == INTERRUPTED and outcome.budget_ended


def test_a_run_without_an_estimate_starts_and_is_stopped_when_the_budget_ends(tmp_path, tree):
    plan, out, executor, outcome, printed = timed_sweep(tmp_path, tree, budget_s=100, run_s=1000, speeds=[])
    assert executor.started == [(plan.runs[0].run_id, 0)]
    assert executor.stopped_at is not None and 100 <= executor.stopped_at < 101
    first = states(plan, out)[plan.runs[0].run_id]
    assert first.state == INTERRUPTED  # resumed, not retried, by the next invocation
    assert (outcome.finished, outcome.failed, outcome.left, outcome.budget_ended) == (0, 0, 3, True)
    assert results_problem(out / RESULTS_FILE) is None


def test_the_eta_scales_the_estimates_by_what_the_finished_runs_really_took(tmp_path, tree):
    speed_record(tmp_path / "speeds")
    took = 2 * RUN_SECONDS  # start-up, evaluation or a busy machine: twice the estimate
    plan, out, executor, outcome, printed = timed_sweep(tmp_path, tree, budget_s=1000, run_s=took,
                                                       speeds=[tmp_path / "speeds"])
    ended = [line for line in printed.splitlines() if "finished" in line]
    assert outcome.finished == 3 and len(ended) == 3
    # after the first run, the two left are estimated at RUN_SECONDS each and took twice that
    assert ended[0].endswith(f"ETA {duration(2 * took)}"), ended[0]
    assert ended[1].endswith(f"ETA {duration(took)}"), ended[1]


def test_estimates_use_the_sweeps_own_records_and_the_epochs_left(tmp_path, tree):
    spec = helpers.write_spec(tmp_path, TINY_RUN, tree, seeds=[0, 1],
                              fixed={"trainer.max_epochs": 4}, points=[{}])
    plan = make_plan(load_spec(spec), [])
    out = tmp_path / "out"
    estimator = Estimator(SpeedBook((), out), "cpu")
    first, second = plan.runs
    assert estimator(first).seconds is None and "nothing recorded on cpu yet" in estimator(first).basis
    speed_record(run_dir_of(out, first.run_id), epochs=3, status="running")  # stopped at epoch 3
    estimator.refresh()
    per_epoch = (40 + 20 / 3) / RATE
    assert estimator(first).seconds == pytest.approx(START_SECONDS + 1 * per_epoch)
    assert estimator(second).seconds == pytest.approx(START_SECONDS + 4 * per_epoch)
    assert "4 epochs x 40 images at 2 img/s (1 record(s) of this model)" in estimator(second).basis
    gpu = Estimator(SpeedBook((), out), "NVIDIA H100 80GB HBM3")
    assert gpu(second).seconds == estimator(second).seconds  # the run's config says cpu


def test_dry_run_with_a_budget_prints_each_estimate_and_the_total(tmp_path, tree, capsys):
    speed_record(tmp_path / "speeds")
    spec = helpers.write_spec(tmp_path, TINY_RUN, tree, seeds=[0],
                              points=[{}, {"trainer.max_epochs": 2}, {"model.name": "wrn-16-1"}])
    out = tmp_path / "out"
    capsys.readouterr()
    assert sweep("run", spec, "--out", out, "--dry-run", "--time-budget", "9m",
                 "--speeds", tmp_path / "speeds") == 0
    printed = capsys.readouterr().out
    lines = {line.split()[0]: line for line in printed.splitlines() if line.startswith("wrn-")}
    one, two, scaled = (lines[run.run_id] for run in make_plan(load_spec(spec), []).runs)
    assert " 0m43s " in one and "1 epoch x 40 images at 2 img/s" in one
    assert " 1m07s " in two  # 20 s + 2 x 23.3 s
    # WRN-16-1 was never recorded: its speed is WRN-10-1's scaled by their multiply-adds.
    macs = {name: model_cost(name)[0] for name in ("wrn-10-1", "wrn-16-1")}
    seconds = START_SECONDS + (40 + 20 / 3) * macs["wrn-16-1"] / macs["wrn-10-1"] / RATE
    assert f" {duration(seconds)} " in scaled and "scaled by cost from 1 `wrn fit` record(s)" in scaled
    assert f"estimated total: {duration(43.33 + 66.67 + seconds)}, runs one after another\n" in printed
    assert "time budget 9m00s" in printed and not out.exists()


# ----------------------------------------------------------------------------- real runs


@pytest.mark.slow
@pytest.mark.usefixtures("warm_sweep_runs")
def test_the_budget_stops_a_real_run_resumably_and_the_next_invocation_finishes_it(
        tmp_path, tree, monkeypatch):
    spec = helpers.write_spec(tmp_path, TINY_RUN, tree, seeds=[0],
                              points=[{"trainer.max_epochs": 1}, {"trainer.max_epochs": 3}])
    plan = make_plan(load_spec(spec), [])
    out = tmp_path / "out"
    shim, held = tmp_path / "shim", tmp_path / "held"
    shim.mkdir()  # holds at epoch 1 until a SIGTERM: the budget ends while the run trains
    (shim / "sitecustomize.py").write_text(HOLD_AT.format(
        hook="on_train_epoch_start", condition="self.current_epoch >= 1", marker=str(held)))
    monkeypatch.setenv("PYTHONPATH", f"{shim}:{Path(__file__).resolve().parents[1]}")
    budget = Budget(3600, clock=lambda: 0.0 if not held.exists() else 1e9)  # ends at the hold
    status = states(plan, out)
    outcome = run_sweep(plan, out, LocalExecutor([], 1), PlainProgress(
        initial_tally(plan, status, 1, 1), io.StringIO()), 1, status, budget,
        Estimator(SpeedBook((), out), "cpu"))
    short, long = (run_dir_of(out, run.run_id) for run in plan.runs)
    assert (outcome.finished, outcome.failed, outcome.left, outcome.budget_ended) == (1, 0, 1, True)
    assert _exit_code(outcome) == BUDGET_EXIT
    record = read_metrics(long)  # written by the run itself, stopped gracefully by the SIGTERM
    assert record["status"] == "interrupted" and "interrupted by SIGTERM" in record["error"], record
    assert states(plan, out)[plan.runs[1].run_id].state == INTERRUPTED
    assert (long / "checkpoints" / "last.ckpt").is_file()
    assert results_problem(out / RESULTS_FILE) is None
    assert read_metrics(long)["images_per_sec"] > 0  # its speed estimates its rest next time

    monkeypatch.delenv("PYTHONPATH")
    stamp = (short / "metrics.json").stat().st_mtime_ns
    assert sweep("run", spec, "--out", out, "--time-budget", "1h") == 0
    assert read_metrics(long)["status"] == "finished"
    assert "--ckpt_path" in attempts(logs(out)[long.name])[-1]
    assert [line["epoch"] for line in read_jsonl(long / "epochs.jsonl")[0]] == [0, 1, 2]
    assert (short / "metrics.json").stat().st_mtime_ns == stamp
    record = json.loads((long / "sweep.json").read_text())
    assert record["settings"]["trainer.max_epochs"] == 3


def test_the_h100_budget_spec_dry_runs_on_a_cpu_without_training(tmp_path, capsys):
    out = tmp_path / "out"
    spec = Path(__file__).resolve().parents[1] / "sweeps" / "h100-budget.yaml"
    capsys.readouterr()
    assert sweep("run", spec, "--out", out, "--dry-run", "--time-budget", "9m") == 0
    printed = capsys.readouterr().out
    assert "12 runs (12 new)" in printed and "plus 12 run(s) with no estimate" in printed
    # With the committed CPU records, every point has an estimate, scaled by its cost.
    speeds = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    assert sweep("run", spec, "--out", out, "--dry-run", "--time-budget", "9m", "--speeds", speeds) == 0
    printed = capsys.readouterr().out
    assert "run(s) with no estimate" not in printed and printed.count("scaled by cost from") == 12
    assert not out.exists()


def test_an_h200_takes_the_h100_records_as_its_first_guess():
    speeds = SpeedBook((Path(__file__).resolve().parents[1] / "benchmarks" / "results",))
    h100, how = speeds.rate("wrn-16-8", {}, 1, "NVIDIA H100 80GB HBM3")
    assert how == "2 record(s) of this model" and 6000 < h100 < 7600  # the end-to-end records
    h200, how = speeds.rate("wrn-16-8", {}, 1, "NVIDIA H200")
    assert h200 == h100 and "NVIDIA H100 80GB HBM3 records as a first guess for NVIDIA H200" in how
    assert speeds.rate("wrn-16-8", {}, 1, "NVIDIA B200") is None


def test_the_cost_model_fits_compute_and_launches_per_device():
    # Seconds per image = a x MACs + c x units / (batch x copies): two models of very different
    # depth and width, made exact by construction, give back a and c.
    a, c = 2e-12, 3e-6
    speeds = [Speed(name, copies, "gpu", 1 / (a * macs + c * units / (128 * copies)))
              for name, copies in (("wrn-28-10", 1), ("resnet-1202", 1), ("wrn-16-1", 4))
              for macs, units in [model_cost(name)]]
    assert _fit_costs(speeds) == pytest.approx((a, c), rel=1e-6)



def test_the_estimate_counts_fused_copies_and_the_test_split():
    from wrn.sweep.budget import EVAL_COST, Workload

    single = Workload(epochs=3, train=900, val=100, test=300, copies=1)
    fused = Workload(epochs=3, train=900, val=100, test=300, copies=4)
    # Each epoch trains 900 images and validates 100 at a third of the cost; the test split is
    # evaluated twice at the end (final and best weights); a fused run's copies see every image.
    assert single.images(3) == pytest.approx(3 * (900 + 100 / 3) + 2 * 300 / 3)
    assert fused.images(3) == 4 * single.images(3) and EVAL_COST == pytest.approx(1 / 3)
    assert single.images(1) == pytest.approx(900 + 100 / 3 + 200)  # a resumed run: 1 epoch left
