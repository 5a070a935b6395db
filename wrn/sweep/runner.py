"""The sweep's main loop: finished runs skipped, interrupted ones resumed, failed ones retried
(max_retries per invocation), new ones started, as slots free up and the time budget allows."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from wrn.report.text import duration
from wrn import rundir
from wrn.rundir import (FAILED, FINISHED, INTERRUPTED, NEW, RUNNING, RunState, resume_checkpoint,
                        run_state, settings_difference)
from wrn.sweep.budget import Budget, Estimator
from wrn.sweep.executors import Executor, RunTask
from wrn.sweep.plan import Plan, PlannedRun
from wrn.sweep.progress import PlainProgress, Tally
from wrn.sweep.results import refresh_results
from wrn.sweep.state import Outcome, read_sweep_record, run_dir_of, write_run_files

WAIT_SECONDS = 1.0  # longest pause between progress refreshes while runs go on


@dataclass(frozen=True)
class SweepOutcome:
    finished: int
    failed: int
    skipped: int  # invalid points
    elsewhere: int  # held by another live sweep
    left: int = 0  # still to run: stopped or not started when the time budget ended
    budget_ended: bool = False


def states(plan: Plan, out_dir: Path) -> dict[str, RunState]:
    return {run.run_id: run_state(run_dir_of(out_dir, run.run_id)) for run in plan.runs}


def _recorded_settings(run_dir: Path) -> dict | None:
    """The settings the sweep recorded for a run, else those its own record holds."""
    sweep = read_sweep_record(run_dir)
    return (rundir.read_record(run_dir) if sweep is None else sweep).get("settings")


def changed_runs(plan: Plan, out_dir: Path, status: dict[str, RunState]) -> list[str]:
    """'<run folder>: <differences>' for every run recorded (not new) with other settings than
    the plan's: such a folder is never reused."""
    changed = []
    for run in plan.runs:
        recorded = _recorded_settings(run_dir_of(out_dir, run.run_id))
        if recorded is None or status[run.run_id].state == NEW:
            continue
        differences = settings_difference(recorded, run.settings)
        if differences:
            changed.append(f"{run_dir_of(out_dir, run.run_id)}: {'; '.join(differences)}")
    return changed


def attempts_allowed(status: RunState, max_retries: int) -> int:
    return max_retries if status.state == FAILED else 1 + max_retries


def will_run(status: RunState, max_retries: int) -> bool:
    return status.state in (NEW, INTERRUPTED, FAILED) and attempts_allowed(status, max_retries) > 0


def _write_run_files(plan: Plan, run: PlannedRun, index: int, out_dir: Path) -> Path:
    record = {"run_id": run.run_id, "config": run.point.label, "index": index,
              "overrides": run.point.overrides, "swept": run.swept,
              "swept_keys": list(run.swept),  # JSON keys get sorted; the columns keep this order
              "identity": run.identity, "settings": run.settings, "spec": str(plan.spec.path),
              "passthrough": list(plan.passthrough)}
    return write_run_files(run_dir_of(out_dir, run.run_id), run.point.nested(), record)


def repair_sweep_records(plan: Plan, out_dir: Path) -> None:
    """Rewrites the sweep.json a run folder lost or had damaged (its settings were checked
    against the run's own record), so that results.csv counts the run again."""
    for index, run in enumerate(plan.runs):
        run_dir = run_dir_of(out_dir, run.run_id)
        if rundir.record_path(run_dir).exists() and read_sweep_record(run_dir) is None:
            _write_run_files(plan, run, index, out_dir)


def _task(plan: Plan, run: PlannedRun, index: int, out_dir: Path) -> RunTask:
    """Writes the run's files, then describes the attempt (resuming when a checkpoint exists
    now, which after a failed attempt it may)."""
    run_dir = run_dir_of(out_dir, run.run_id).resolve()
    point_file = _write_run_files(plan, run, index, out_dir)
    args = plan.fit_args(point_file, run_dir, resume_checkpoint(run_dir))
    return RunTask(run.run_id, str(run_dir), tuple(args), run.identity, os.getcwd())


class _Sweep:
    """The queue of attempts still to make, fed to the executor as slots free up."""

    def __init__(self, plan: Plan, out_dir: Path, executor: Executor, progress: PlainProgress,
                 max_retries: int, status: dict[str, RunState], budget: Budget | None = None,
                 estimator: Estimator | None = None):
        self.plan, self.out_dir, self.executor, self.progress = plan, out_dir, executor, progress
        self.budget, self.estimator = budget, estimator
        self.index = {run.run_id: i for i, run in enumerate(plan.runs)}
        self.queue = deque(run for run in plan.runs if will_run(status[run.run_id], max_retries))
        self.attempts_left = {run.run_id: attempts_allowed(status[run.run_id], max_retries)
                              for run in self.queue}
        self.under_way = {run_id for run_id, state in status.items() if state.state == INTERRUPTED}
        self.expected: dict[str, float] = {}  # run id -> its estimate when it started
        self.measured: list[tuple[float, float]] = []  # (estimated, wall) seconds of runs finished now

    def _next(self) -> tuple[PlannedRun, float | None] | None:
        """(run, its estimate) of the first queued run that fits in the budget (the first run
        without one), or of an interrupted run longer than the whole budget while nothing runs and
        half the budget is left: it resumes where it stopped, and each call keeps the epochs it trains."""
        if self.budget is not None and self.estimator is not None:
            self.estimator.refresh()  # a run's recorded epochs calibrate the next estimates
        for run in list(self.queue):
            seconds = self.estimator(run).seconds if self.estimator else None
            if self.budget is None or self.budget.fits(seconds) or self._continues(run, seconds):
                self.queue.remove(run)
                return run, seconds
        return None

    def _continues(self, run: PlannedRun, seconds: float | None) -> bool:
        return (run.run_id in self.under_way and seconds is not None and seconds > self.budget.seconds
                and not self.executor.running and self.budget.left() >= self.budget.seconds / 2)

    def start_what_fits(self) -> None:
        while self.queue and self.executor.has_free_slot():
            chosen = self._next()
            if chosen is None:
                return
            run, expected = chosen
            self.attempts_left[run.run_id] -= 1
            if expected:
                self.expected[run.run_id] = expected
            task = _task(self.plan, run, self.index[run.run_id], self.out_dir)
            self.progress.started(run.run_id, run.point.label, "--ckpt_path" in task.fit_args)
            refused = self.executor.submit(task)  # only when another sweep holds the run
            if refused is not None:
                self.progress.ended(refused, retry=False)

    def record(self, outcome: Outcome) -> None:
        retry = outcome.status == FAILED and self.attempts_left[outcome.run_id] > 0
        expected = self.expected.pop(outcome.run_id, None)
        if outcome.status == FINISHED and expected and outcome.seconds > 0:
            self.measured.append((expected, outcome.seconds))
        self.progress.ended(outcome, retry)
        if retry:
            self.queue.append(self.plan.runs[self.index[outcome.run_id]])
        refresh_results(self.out_dir, self.progress.note)
        if self.estimator is not None:
            self.estimator.refresh()  # the run's speed estimates the runs of its model

    def note_too_long(self) -> None:
        """Name the runs left whose estimate exceeds the whole budget: no call of this length
        will ever start them."""
        if self.budget is None or self.estimator is None:
            return
        for run in self.queue:
            seconds = self.estimator(run).seconds
            if seconds is not None and seconds > self.budget.seconds and run.run_id not in self.under_way:
                self.progress.note(f"{run.run_id}: estimated {duration(seconds)}, longer than the "
                                   f"whole time budget ({duration(self.budget.seconds)}); it will "
                                   "not start under this budget")

    def eta(self) -> float | None:
        """Seconds until every queued and running run ends, None unless all have an estimate
        (docs/sweeps.md: the sum is scaled by this invocation's wall time against estimates)."""
        if self.estimator is None:
            return None
        runs = [*self.queue, *(self.plan.runs[self.index[run_id]] for run_id in self.executor.running)]
        seconds = [self.estimator(run).seconds for run in runs]
        if None in seconds:
            return None
        scale = (sum(wall for _, wall in self.measured) / sum(est for est, _ in self.measured)
                 if self.measured else 1.0)
        return scale * sum(seconds) / max(1, self.executor.capacity)

    def run(self) -> None:
        """Until nothing runs and nothing more can start (done, or the rest does not fit)."""
        while True:
            self.start_what_fits()
            if not self.executor.running:
                return
            if self.budget is not None and self.budget.spent():
                self.progress.note(f"time budget spent: stopping {len(self.executor.running)} "
                                   "run(s); they resume from their checkpoints next time")
                self.executor.shutdown()
                return
            wait = WAIT_SECONDS if self.budget is None else min(WAIT_SECONDS, self.budget.left())
            for outcome in self.executor.wait(max(0.0, wait)):
                self.record(outcome)
            self.progress.tick()


def run_sweep(plan: Plan, out_dir: Path, executor: Executor, progress: PlainProgress,
              max_retries: int, status: dict[str, RunState], budget: Budget | None = None,
              estimator: Estimator | None = None) -> SweepOutcome:
    """Run everything not finished (with a budget: what fits); returns the final counts.
    results.csv is rewritten after every run that ends, so a kill at any moment loses nothing
    already recorded; on any exit (Ctrl-C included) the executor stops what still runs, which
    stays resumable."""
    repair_sweep_records(plan, out_dir)
    refresh_results(out_dir, progress.note)
    sweep = _Sweep(plan, out_dir, executor, progress, max_retries, status, budget, estimator)
    progress.tally.estimate = sweep.eta
    with progress:
        try:
            sweep.run()
            sweep.note_too_long()
        finally:
            executor.shutdown()
    refresh_results(out_dir, progress.note)  # runs stopped by the budget record their state
    return outcome_of(plan, out_dir, budget_ended=budget is not None)


def outcome_of(plan: Plan, out_dir: Path, budget_ended: bool = False) -> SweepOutcome:
    """The counts the run folders give now; with budget_ended, runs left count as the budget's."""
    final = [s.state for s in states(plan, out_dir).values()]
    left = final.count(NEW) + final.count(INTERRUPTED)
    return SweepOutcome(final.count(FINISHED), final.count(FAILED), len(plan.skipped),
                        final.count(RUNNING), left, budget_ended and left > 0)


def initial_tally(plan: Plan, status: dict[str, RunState], max_retries: int, capacity: int) -> Tally:
    """Counts before anything runs: failed are those with no retry left in this invocation."""
    states_now = list(status.values())
    return Tally(total=len(plan.runs), done=sum(s.state == FINISHED for s in states_now),
                 failed=sum(s.state == FAILED and not will_run(s, max_retries) for s in states_now),
                 skipped=len(plan.skipped), left=sum(will_run(s, max_retries) for s in states_now),
                 capacity=capacity)
