"""Sweeps over `wrn fit`: a YAML spec of grid x points x seeds, each run a `wrn fit` subprocess
(locally, one per GPU, or as Ray tasks), results.csv derived from the run directories.

    spec.py       load_spec(path) -> SweepSpec; expand(spec) -> [Point]
    plan.py       make_plan(spec, passthrough) -> Plan: every point parsed like `wrn fit`; run settings
    state.py      run directory layout and states; failure records
    executors.py  the Executor protocol; LocalExecutor, RayExecutor: one subprocess per run
    budget.py     --time-budget: durations, recorded speeds, per-run estimates, the deadline
    runner.py     run_sweep(plan, out_dir, executor, progress, max_retries, status, budget, ...)
    results.py    results.csv (refresh_results) and the per-config summary
    progress.py   rich live view on a terminal, plain lines otherwise
    cli.py        `wrn sweep run|status|summarize`
"""
