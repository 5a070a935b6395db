"""`wrn sweep run|status|summarize`: depth x width sweeps, each run a `wrn fit` subprocess.

    wrn sweep run SPEC --out DIR [--executor local|ray] [--gpus 0,1|none] [--trials-per-gpu N]
                  [--dry-run] [--address RAY_ADDRESS] [--max-retries N] [--any.fit.key VALUE ...]
    wrn sweep status SPEC --out DIR
    wrn sweep summarize DIR [--format table|csv|json]

`run` exits 0 when every run finished, 1 when some failed (the others still ran), 2 on an error
in the spec or the arguments (before anything runs).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from wrn.sweep.plan import Plan, make_plan
from wrn.sweep.progress import make_progress
from wrn.report.results import RESULTS_FILE, results_problem
from wrn.report.summary import FORMATS, runs_of_records, summarize, summary_table
from wrn.report.text import render_table
from wrn.sweep.results import refresh_results
from wrn.sweep.runner import initial_tally, run_sweep, states, will_run
from wrn.sweep.spec import load_spec
from wrn.sweep.state import FAILED, FINISHED, INTERRUPTED, NEW, RUNNING, RunStatus

INTERRUPTED_EXIT = 130  # 128 + SIGINT, the shell's convention
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
    status = commands.add_parser("status", allow_abbrev=False, help="state of every run of a spec",
                                 epilog="pass-through arguments are accepted and checked as by run")
    status.add_argument("spec")
    status.add_argument("--out", required=True)
    summary = commands.add_parser("summarize", allow_abbrev=False,
                                  help="mean ± std per configuration over seeds")
    summary.add_argument("dir", help="a sweep's output folder")
    summary.add_argument("--format", choices=("table", "csv", "json"), default="table")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    args, passthrough = parser.parse_known_args(argv)
    if args.command == "summarize" and passthrough:
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    if args.command == "summarize":
        return _summarize(Path(args.dir), args.format)
    plan = make_plan(load_spec(args.spec), passthrough)
    out = Path(args.out).expanduser().resolve()
    if args.command == "status":
        return _status(plan, out)
    return _run(args, plan, out)


# ------------------------------------------------------------------------------------- reports

ACTIONS = {NEW: "start", INTERRUPTED: "resume", FAILED: "retry", FINISHED: "done",
           RUNNING: "running elsewhere"}


def _plan_lines(plan: Plan, status: dict[str, RunStatus], max_retries: int | None) -> list[str]:
    """One line per run (its state, or with max_retries its next action) and per skipped point."""
    header = ("run_id", "state" if max_retries is None else "action", "seed", "config", "detail")
    rows = []
    for run in plan.runs:
        state = status[run.run_id]
        shown = state.state if max_retries is None else ACTIONS[state.state]
        if max_retries is not None and state.state == FAILED and not will_run(state, max_retries):
            shown = "failed (no retries)"
        seed = run.identity["seed"]
        rows.append((run.run_id, shown, "-" if seed is None else str(seed), run.point.label,
                     state.detail))
    lines = render_table(header, rows).splitlines() + skipped_lines(plan)
    counts = Counter(state.state for state in status.values())
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    lines.append(f"{len(plan.runs)} runs ({summary or 'none'}), {len(plan.skipped)} skipped points")
    return lines


def skipped_lines(plan: Plan) -> list[str]:
    """One line per skipped configuration, its seeds together."""
    seeds: dict[tuple[str, str], list[str]] = {}
    for skipped in plan.skipped:
        seeds.setdefault((skipped.point.label, skipped.reason), []).append(str(skipped.point.seed))
    return [f"skipped  {label} (seeds {', '.join(s)}): {reason}" if s != ["None"]
            else f"skipped  {label}: {reason}" for (label, reason), s in seeds.items()]


def _status(plan: Plan, out: Path) -> int:
    print(f"sweep {plan.spec.path} -> {out}")
    print("\n".join(_plan_lines(plan, states(plan, out), None)))
    problem = results_problem(out / RESULTS_FILE)
    if problem and problem != "missing":
        print(f"{out / RESULTS_FILE} is {problem}; `wrn sweep run` or `summarize` rebuilds it")
    return 0


def _summarize(out: Path, fmt: str) -> int:
    if not out.is_dir():
        raise ValueError(f"{out}: no such sweep output folder")
    rows = refresh_results(out, report=lambda message: print(message, file=sys.stderr))
    if not rows:
        raise ValueError(f"{out}: no run records under {out / 'runs'}")
    summaries, note = summarize(runs_of_records(rows, out))
    if note:
        print(f"note: {note}", file=sys.stderr)
    print(FORMATS[fmt](summaries).rstrip("\n"))
    return 0


# ------------------------------------------------------------------------------------- run


def _gpus(text: str | None, executor: str) -> list[int] | None:
    """Device ids; [] for CPU; None lets Ray count a cluster's GPUs itself."""
    if text is None:
        if executor == "ray":
            return None
        import torch

        return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    if text.strip().lower() in ("", "none", "cpu"):
        return []
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--gpus {text!r}: expected device ids like 0,1 or 'none'") from None


def _executor(args):
    from wrn.sweep.executors import LocalExecutor, RayExecutor

    if args.trials_per_gpu < 1:
        raise ValueError(f"--trials-per-gpu {args.trials_per_gpu} must be >= 1")
    gpus = _gpus(args.gpus, args.executor)
    if args.executor == "ray":
        return RayExecutor(gpus, args.trials_per_gpu, args.address)
    return LocalExecutor(gpus, args.trials_per_gpu)


def _run(args, plan: Plan, out: Path) -> int:
    if args.max_retries < 0:
        raise ValueError(f"--max-retries {args.max_retries} must be >= 0")
    status = states(plan, out)
    if args.dry_run:
        print(f"sweep {plan.spec.path} -> {out} (dry run: nothing runs)")
        print("\n".join(_plan_lines(plan, status, args.max_retries)))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    tally = initial_tally(plan, status, args.max_retries, capacity=1)
    if tally.left == 0:  # no executor (no Ray start-up) for a sweep that is already done
        refresh_results(out)
        print(f"sweep {plan.spec.path} -> {out}: nothing to run ({tally.done} finished, "
              f"{tally.failed} failed with no retries left, {tally.skipped} skipped points)")
        return 1 if tally.failed else 0
    executor = _executor(args)
    tally.capacity = executor.capacity
    print(f"sweep {plan.spec.path} -> {out}: {len(plan.runs)} runs, {len(plan.skipped)} skipped "
          f"points; {executor.description}", flush=True)
    for line in skipped_lines(plan):
        print(line)
    try:
        outcome = run_sweep(plan, out, executor, make_progress(tally), args.max_retries, status)
    except KeyboardInterrupt:
        print("interrupted: runs resume from their checkpoints on the next `wrn sweep run`",
              file=sys.stderr)
        return INTERRUPTED_EXIT
    rows = refresh_results(out)
    print(f"sweep done: {outcome.finished} finished, {outcome.failed} failed, {outcome.skipped} "
          f"skipped points, {outcome.elsewhere} held by another sweep -> {out / RESULTS_FILE}")
    if rows:
        summaries, note = summarize(runs_of_records(rows, out))
        print(summary_table(summaries) + (f"\nnote: {note}" if note else ""))
    return 1 if outcome.failed else 0
