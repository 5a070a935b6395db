"""The sweep's main loop: decide what each run needs, feed the executor, record every ending.

Per run, from its directory (see wrn.sweep.state): finished -> skipped; interrupted (a running
record or a last.ckpt without a finished record) -> resumed with --ckpt_path; failed -> retried,
resuming from its checkpoint when it has one; new -> started. A run gets 1 + max_retries attempts
per invocation, or max_retries when it had already failed before this invocation.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from wrn.sweep.executors import RunTask
from wrn.sweep.plan import Plan, PlannedRun
from wrn.sweep.progress import PlainProgress, Tally
from wrn.sweep.results import refresh_results
from wrn.sweep.state import (FAILED, FINISHED, INTERRUPTED, NEW, RUNNING, Outcome, RunStatus,
                             inspect_run, last_checkpoint, run_dir_of, write_run_files)

WAIT_SECONDS = 1.0  # longest pause between progress refreshes while runs go on


@dataclass(frozen=True)
class SweepOutcome:
    finished: int
    failed: int
    skipped: int  # invalid points
    elsewhere: int  # held by another live sweep


def states(plan: Plan, out_dir: Path) -> dict[str, RunStatus]:
    return {run.run_id: inspect_run(run_dir_of(out_dir, run.run_id)) for run in plan.runs}


def attempts_allowed(status: RunStatus, max_retries: int) -> int:
    return max_retries if status.state == FAILED else 1 + max_retries


def will_run(status: RunStatus, max_retries: int) -> bool:
    return status.state in (NEW, INTERRUPTED, FAILED) and attempts_allowed(status, max_retries) > 0


def _task(plan: Plan, run: PlannedRun, index: int, out_dir: Path) -> RunTask:
    """Writes the run's point.yaml and sweep.json, then describes the attempt (resuming when a
    checkpoint exists now, which after a failed attempt it may)."""
    run_dir = run_dir_of(out_dir, run.run_id).resolve()
    record = {"run_id": run.run_id, "config": run.point.label, "index": index,
              "overrides": run.point.overrides, "swept": run.swept,
              "swept_keys": list(run.swept),  # JSON keys get sorted; the columns keep this order
              "identity": run.identity, "spec": str(plan.spec.path),
              "passthrough": list(plan.passthrough)}
    point_file = write_run_files(run_dir, run.point.nested(), record)
    args = plan.fit_args(point_file, run_dir, last_checkpoint(run_dir))
    return RunTask(run.run_id, str(run_dir), tuple(args), run.identity, os.getcwd())


class _Sweep:
    """The queue of attempts still to make, fed to the executor as slots free up."""

    def __init__(self, plan: Plan, out_dir: Path, executor, progress: PlainProgress,
                 max_retries: int, status: dict[str, RunStatus]):
        self.plan, self.out_dir, self.executor, self.progress = plan, out_dir, executor, progress
        self.index = {run.run_id: i for i, run in enumerate(plan.runs)}
        self.queue = deque(run for run in plan.runs if will_run(status[run.run_id], max_retries))
        self.attempts_left = {run.run_id: attempts_allowed(status[run.run_id], max_retries)
                              for run in self.queue}

    def start_what_fits(self) -> None:
        while self.queue and self.executor.has_free_slot():
            run = self.queue.popleft()
            self.attempts_left[run.run_id] -= 1
            task = _task(self.plan, run, self.index[run.run_id], self.out_dir)
            self.progress.started(run.run_id, run.point.label, "--ckpt_path" in task.fit_args)
            refused = self.executor.submit(task)  # only when another sweep holds the run
            if refused is not None:
                self.progress.ended(refused, retry=False)

    def record(self, outcome: Outcome) -> None:
        retry = outcome.status == FAILED and self.attempts_left[outcome.run_id] > 0
        self.progress.ended(outcome, retry)
        if retry:
            self.queue.append(self.plan.runs[self.index[outcome.run_id]])
        refresh_results(self.out_dir, self.progress.note)

    def run(self) -> None:
        while self.queue or self.executor.running:
            self.start_what_fits()
            for outcome in self.executor.wait(WAIT_SECONDS):
                self.record(outcome)
            self.progress.tick()


def run_sweep(plan: Plan, out_dir: Path, executor, progress: PlainProgress, max_retries: int,
              status: dict[str, RunStatus]) -> SweepOutcome:
    """Run everything not finished; returns the final counts. results.csv is rewritten after
    every run that ends, so a kill at any moment loses nothing already recorded; on any exit
    (Ctrl-C included) the executor stops what still runs, which stays resumable."""
    refresh_results(out_dir, progress.note)
    with progress:
        try:
            _Sweep(plan, out_dir, executor, progress, max_retries, status).run()
        finally:
            executor.shutdown()
    final = [s.state for s in states(plan, out_dir).values()]
    return SweepOutcome(final.count(FINISHED), final.count(FAILED), len(plan.skipped),
                        final.count(RUNNING))


def initial_tally(plan: Plan, status: dict[str, RunStatus], max_retries: int, capacity: int) -> Tally:
    """Counts before anything runs: failed are those with no retry left in this invocation."""
    states_now = list(status.values())
    return Tally(total=len(plan.runs), done=sum(s.state == FINISHED for s in states_now),
                 failed=sum(s.state == FAILED and not will_run(s, max_retries) for s in states_now),
                 skipped=len(plan.skipped), left=sum(will_run(s, max_retries) for s in states_now),
                 capacity=capacity)
