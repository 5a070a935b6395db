"""`wrn sweep run|status|summarize`: depth x width sweeps, each run a `wrn fit` subprocess. The
exit codes of `run` (0 finished, 1 some failed, 2 bad input, 3 runs left, 130 Ctrl-C) are in
docs/sweeps.md."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

from wrn.report.results import RESULTS_FILE, read_sources, results_problem
from wrn.report.summary import FORMATS, runs_of_records, summarize, summary_table
from wrn.report.tables import source_arguments
from wrn.report.text import duration, render_table
from wrn.rundir import FAILED, FINISHED, INTERRUPTED, NEW, RUNNING, RunState
from wrn.sweep.budget import Budget, Estimator, SpeedBook, parse_duration
from wrn.sweep.plan import Plan, make_plan
from wrn.sweep.progress import make_progress
from wrn.sweep.results import refresh_results
from wrn.sweep.runner import (SweepOutcome, changed_runs, initial_tally, outcome_of,
                              repair_sweep_records, run_sweep, states, will_run)
from wrn.sweep.spec import MAX_POINTS, load_spec, point_count
from wrn.sweep.state import RUNS_DIR, SWEEP_FILE

INTERRUPTED_EXIT = 130  # 128 + SIGINT, the shell's convention
BUDGET_EXIT = 3  # runs left (the time budget ended, or one was interrupted): run it again
SAY_CHECKING_FROM = 100  # points: from this many, say that the check is going on
PASSTHROUGH_HELP = ("any other --key value is passed to every `wrn fit` after the point's config "
                    "(e.g. --data.root DIR --trainer.max_epochs 1), and checked like the points")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wrn sweep", allow_abbrev=False,
                                     description="Sweep `wrn fit` over a grid of configs.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", allow_abbrev=False, help="run every point not finished yet",
                              epilog=PASSTHROUGH_HELP)
    run.add_argument("spec", help="sweep spec (sweeps/*.yaml)")
    run.add_argument("--out", required=True, help="output folder: runs/<run_id>/, results.csv")
    run.add_argument("--executor", choices=("local", "ray"), default="local")
    run.add_argument("--gpus", default=None,
                     help="CUDA device ids, e.g. 0,1, or 'none' for CPU (default: all visible)")
    run.add_argument("--trials-per-gpu", type=int, default=1, help="runs sharing one GPU (default: 1)")
    run.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    run.add_argument("--address", default=None, help="Ray cluster to join (default: a local Ray)")
    run.add_argument("--max-retries", type=int, default=1,
                     help="extra attempts of a failed run per invocation (default: 1)")
    run.add_argument("--max-points", type=int, default=MAX_POINTS,
                     help=f"refuse specs with more points than this (default: {MAX_POINTS:,})")
    run.add_argument("--time-budget", default=None, metavar="DURATION",
                     help="start only runs estimated to end within it (90s, 9m, 1h30m); stop "
                          "the rest at its end; the next invocation continues")
    run.add_argument("--speeds", action="append", default=[], metavar="DIR",
                     help="run records (searched for metrics.json) whose images/s estimate runs "
                          "for --time-budget, beside OUT's own; repeatable")
    status = commands.add_parser("status", allow_abbrev=False, help="state of every run of a spec",
                                 epilog="pass-through arguments are accepted and checked as by run")
    status.add_argument("spec")
    status.add_argument("--out", required=True)
    status.add_argument("--max-points", type=int, default=MAX_POINTS)
    summary = commands.add_parser("summarize", allow_abbrev=False,
                                  help="mean ± std per configuration over seeds")
    source_arguments(summary, sweep="a sweep's output folder (its results.csv brought up to date first)")
    summary.add_argument("--format", choices=("table", "csv", "json"), default="table")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    args, passthrough = parser.parse_known_args(argv)
    if args.command == "summarize" and passthrough:
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    try:
        if args.command == "summarize":
            return _summarize(args.sources, args.label, args.format)
        return _plan_and_go(args, passthrough)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


def _plan_and_go(args, passthrough: list[str]) -> int:
    started = time.monotonic()
    out = _check_out(args.out, write=args.command == "run" and not args.dry_run)
    budget = (Budget(parse_duration(args.time_budget))
              if args.command == "run" and args.time_budget is not None else None)
    if args.max_points < 1:
        raise ValueError(f"--max-points {args.max_points} must be >= 1")
    spec = load_spec(args.spec)
    if point_count(spec) >= SAY_CHECKING_FROM:
        print(f"checking {point_count(spec):,} points of {spec.path} ...", file=sys.stderr, flush=True)
    plan = make_plan(spec, passthrough, max_points=args.max_points)
    status = states(plan, out)
    changed = changed_runs(plan, out, status)
    if changed:
        more = f" (and {len(changed) - 1} more run folder(s))" if len(changed) > 1 else ""
        raise ValueError(f"{changed[0]}{more}: recorded with other settings than this spec and "
                         "these arguments now give; a run folder is never reused for another "
                         "run: pass another --out, or delete those folders to redo them")
    if not plan.runs:
        for line in skipped_lines(plan):
            print(line, file=sys.stderr)
        raise ValueError(f"{spec.path}: every point is invalid ({len(plan.skipped)} skipped, "
                         "reasons above); nothing to run")
    if args.command == "status":
        return _status(plan, out, status)
    return _run(args, plan, out, status, budget, started)


def _check_out(text: str, write: bool) -> Path:
    """The output folder; one line when it is a file, lies under a file, or (to write) is not
    writable. Status and dry runs only read: a read-only or missing folder is fine for them."""
    out = Path(text).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {text}: is a file, not a folder")
    existing = next(parent for parent in (out, *out.parents) if parent.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {text}: {existing} is a file, not a folder")
    if write and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {text}: {existing} is not writable (permission denied)")
    if write and out.is_dir() and (out / RUNS_DIR).is_dir() and not os.access(out / RUNS_DIR, os.W_OK):
        raise ValueError(f"--out {text}: {out / RUNS_DIR} is not writable (permission denied)")
    return out


ACTIONS = {NEW: "start", INTERRUPTED: "resume", FAILED: "retry", FINISHED: "done",
           RUNNING: "running elsewhere"}


def _plan_lines(plan: Plan, status: dict[str, RunState], max_retries: int | None,
                estimator: Estimator | None = None) -> list[str]:
    """One line per run (its state, or with max_retries its next action; with an estimator its
    estimated time) and per skipped point."""
    header = ("run_id", "state" if max_retries is None else "action", "seed", "config",
              *(["estimate"] if estimator else []), "detail")
    rows, estimates = [], []
    for run in plan.runs:
        state = status[run.run_id]
        goes = max_retries is None or will_run(state, max_retries)
        shown = state.state if max_retries is None else ACTIONS[state.state]
        if state.state == FAILED and not goes:
            shown = "failed (no retries)"
        seed = run.identity["seed"]
        row = [run.run_id, shown, "-" if seed is None else str(seed), run.point.label]
        if estimator is None:
            row.append(state.detail)
        elif not goes:
            row += ["-", state.detail]
        else:
            estimate = estimator(run)
            estimates.append(estimate.seconds)
            row += ["?" if estimate.seconds is None else duration(estimate.seconds), estimate.basis]
        rows.append(row)
    lines = render_table(header, rows).splitlines() + skipped_lines(plan)
    counts = Counter(state.state for state in status.values())
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    lines.append(f"{len(plan.runs)} runs ({summary or 'none'}), {len(plan.skipped)} skipped points")
    if estimator is not None:
        total, unknown = duration(sum(filter(None, estimates), 0.0)), estimates.count(None)
        lines.append(f"estimated total: {total}, runs one after another"
                     + (f", plus {unknown} run(s) with no estimate" if unknown else ""))
    return lines


def skipped_lines(plan: Plan) -> list[str]:
    """One line per skipped configuration, its seeds together."""
    seeds: dict[tuple[str, str], list[str]] = {}
    for skipped in plan.skipped:
        seeds.setdefault((skipped.point.label, skipped.reason), []).append(str(skipped.point.seed))
    return [f"skipped  {label} (seeds {', '.join(s)}): {reason}" if s != ["None"]
            else f"skipped  {label}: {reason}" for (label, reason), s in seeds.items()]


def _status(plan: Plan, out: Path, status: dict[str, RunState]) -> int:
    """Reads only: never writes into OUT (a finished sweep may be read-only)."""
    print(f"sweep {plan.spec.path} -> {out}")
    print("\n".join(_plan_lines(plan, status, None)))
    problem = results_problem(out / RESULTS_FILE)
    if problem and problem != "missing":
        print(f"{out / RESULTS_FILE} is {problem}; `wrn sweep run` or `summarize` rebuilds it")
    return 0


def _is_sweep_output(folder: Path) -> bool:
    runs = folder / RUNS_DIR
    return runs.is_dir() and ((folder / RESULTS_FILE).is_file()
                              or any((run / SWEEP_FILE).is_file() for run in runs.iterdir()))


def _summarize(paths: list[Path], labels: list[str], fmt: str) -> int:
    """A sweep's output folder is summarized from its run records (results.csv rebuilt from them
    first); any other source as the report reads it."""
    for out in filter(_is_sweep_output, paths):
        if not refresh_results(out, report=lambda message: print(message, file=sys.stderr)):
            raise ValueError(f"{out}: no run records under {out / RUNS_DIR}")
    results = read_sources(paths, labels)
    summaries, note = summarize(results.runs)
    for message in [*results.notes, *([note] if note else [])]:
        print(f"note: {message}", file=sys.stderr)
    print(FORMATS[fmt](summaries).rstrip("\n"))
    return 0


def _gpus(text: str | None, executor: str) -> list[int] | None:
    """Device ids; [] for CPU; None lets Ray count a cluster's GPUs itself. Local ids must be
    visible devices (torch.cuda.device_count()), each named once."""
    if text is None and executor == "ray":
        return None
    if text is not None and text.strip().lower() in ("", "none", "cpu"):
        return []
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text is None:
        return list(range(visible))
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--gpus {text!r}: expected device ids like 0,1 or 'none'") from None
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"--gpus {text}: device {repeated[0]} named twice (use --trials-per-gpu "
                         "to share a GPU)")
    bad = [i for i in ids if not 0 <= i < visible]
    if bad:
        seen = f"ids 0 to {visible - 1}" if visible else "no CUDA device visible"
        raise ValueError(f"--gpus {text}: no device {bad[0]} ({seen}); pass --gpus none for CPU")
    return ids


def _gpu_name(gpus: list[int] | None, args) -> str | None:
    """The device runs train on, for estimates: a GPU's name, 'cpu', or None when unknown."""
    if args.executor == "ray" and args.address:
        return None
    if not gpus:
        return None if gpus is None else "cpu"
    import torch

    return torch.cuda.get_device_name(gpus[0])


def _summary(outcome: SweepOutcome, out: Path, started: float) -> str:
    left = (f", {outcome.left} left for the next invocation (time budget)"
            if outcome.budget_ended else "")
    return (f"sweep ended: {outcome.finished} finished, {outcome.failed} failed{left}, "
            f"{outcome.skipped} skipped points, {outcome.elsewhere} held by another sweep; "
            f"wall {duration(time.monotonic() - started)}; results {out / RESULTS_FILE}, "
            f"run folders {out / RUNS_DIR}/")


def _exit_code(outcome: SweepOutcome) -> int:
    return 1 if outcome.failed else BUDGET_EXIT if outcome.left else 0


def _run(args, plan: Plan, out: Path, status: dict[str, RunState], budget: Budget | None,
         started: float) -> int:
    if args.max_retries < 0:
        raise ValueError(f"--max-retries {args.max_retries} must be >= 0")
    if args.trials_per_gpu < 1:
        raise ValueError(f"--trials-per-gpu {args.trials_per_gpu} must be >= 1")
    gpus = _gpus(args.gpus, args.executor)
    estimator = Estimator(SpeedBook(tuple(Path(d) for d in args.speeds), out), _gpu_name(gpus, args))
    if args.dry_run:
        print(f"sweep {plan.spec.path} -> {out} (dry run: nothing runs)")
        print("\n".join(_plan_lines(plan, status, args.max_retries, estimator)))
        if budget is not None:
            print(f"time budget {duration(budget.seconds)}: runs start while their estimate fits "
                  "in what is left; runs with no estimate start when their turn comes")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    tally = initial_tally(plan, status, args.max_retries, capacity=1)
    if tally.left == 0:  # no executor (no Ray start-up) for a sweep that is already done
        repair_sweep_records(plan, out)
        refresh_results(out)
        print(f"sweep {plan.spec.path} -> {out}: nothing to run ({tally.done} finished, "
              f"{tally.failed} failed with no retries left, {tally.skipped} skipped points)")
        outcome = SweepOutcome(tally.done, tally.failed, tally.skipped, 0)
        print(_summary(outcome, out, started))
        return _exit_code(outcome)
    from wrn.sweep.executors import LocalExecutor, RayExecutor

    executor = (RayExecutor(gpus, args.trials_per_gpu, args.address) if args.executor == "ray"
                else LocalExecutor(gpus, args.trials_per_gpu))
    tally.capacity = executor.capacity
    print(f"sweep {plan.spec.path} -> {out}: {len(plan.runs)} runs, {len(plan.skipped)} skipped "
          f"points; {executor.description}"
          + (f"; time budget {duration(budget.left())} left" if budget else ""), flush=True)
    for line in skipped_lines(plan):
        print(line)
    try:
        outcome = run_sweep(plan, out, executor, make_progress(tally), args.max_retries, status,
                            budget, estimator)
    except KeyboardInterrupt:
        print("interrupted: runs resume from their checkpoints on the next `wrn sweep run`",
              file=sys.stderr)
        print(_summary(outcome_of(plan, out), out, started))
        return INTERRUPTED_EXIT
    rows = refresh_results(out)
    if rows:
        summaries, note = summarize(runs_of_records(rows, out))
        print(summary_table(summaries) + (f"\nnote: {note}" if note else ""))
    print(_summary(outcome, out, started))
    return _exit_code(outcome)
