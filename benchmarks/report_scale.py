"""`wrn table` and `wrn plot` on large synthetic results files: the seconds each takes, and a
check that the table's numbers are right.

    python benchmarks/report_scale.py [--rows 30000] [--configs 3000] [--plot-configs 300] [--out DIR]

Writes RESULTS.csv files of `--rows` rows (`--configs` configurations, seeds spread evenly),
times `wrn table --format csv` on it and checks every configuration's mean and sample std
against numpy; then times `wrn plot` on `--plot-configs` configurations and on the whole file.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wrn.report import plot, tables
from wrn.report.results import RESULT_COLUMNS

DEPTHS = (10, 16, 22, 28, 40)


def synthetic_rows(rows: int, configs: int, seed: int = 0) -> list[dict]:
    """`rows` finished runs of `configs` configurations (WRN depth x width x learning rate, and
    some ResNets), seeds round-robin; accuracies drawn around a size-dependent mean."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(rows):
        c = i % configs
        if c % 10 == 9:
            depth, k, family, model = 20 + 6 * (c % 7), 1, "resnet", f"resnet-{20 + 6 * (c % 7)}"
        else:
            depth, k = DEPTHS[c % len(DEPTHS)], 1 + (c // len(DEPTHS)) % 12
            family, model = "wrn", f"wrn-{DEPTHS[c % len(DEPTHS)]}-{1 + (c // len(DEPTHS)) % 12}"
        params = 7.8e4 * k * k * depth / 10
        acc = float(np.clip(0.6 + 0.03 * np.log(params) / 3 + rng.normal(0, 0.01), 0, 1))
        out.append({
            "run_id": f"r{i}", "config": f"{model},lr=c{c}", "status": "finished", "model": model,
            "family": family, "depth": depth, "widen_factor": k, "dropout": 0.0,
            "seed": i // configs, "params": params, "macs": params * 160.0,
            "best_val_acc": acc, "final_val_acc": acc, "test_acc": acc, "epochs": 6,
            "wall_seconds": params / 1e4, "images_per_sec": 1e9 / params, "device": "cpu",
        })
    return out


def write_rows(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def expected(rows: list[dict]) -> dict[str, tuple[float, float, int]]:
    """Per config: (mean error %, sample std, n), from numpy."""
    errors: dict[str, list[float]] = {}
    for row in rows:
        errors.setdefault(row["config"], []).append(100 * (1 - row["test_acc"]))
    return {c: (float(np.mean(e)), float(np.std(e, ddof=1)) if len(e) > 1 else 0.0, len(e))
            for c, e in errors.items()}


def table_csv(path: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if tables.main([str(path), "--format", "csv"]) != 0:
            raise SystemExit(f"wrn table failed on {path}")
    return out.getvalue()


def check_table(text: str, rows: list[dict]) -> int:
    """Number of configurations checked; AssertionError on the first wrong number."""
    want = expected(rows)
    got = list(csv.DictReader(io.StringIO(text)))
    assert len(got) == len(want), (len(got), len(want))
    for row in got:
        mean, std, n = want[row["config"]]
        assert int(row["n"]) == n, row
        assert abs(float(row["error_mean"]) - mean) < 1e-9, row
        assert abs(float(row["error_std"]) - std) < 1e-9, row
    return len(got)


def _timed(label: str, action) -> float:
    start = time.perf_counter()
    action()
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f} s", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--configs", type=int, default=3_000)
    parser.add_argument("--plot-configs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None, help="keep the files here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = synthetic_rows(args.rows, args.configs)
        big = out / "results-big.csv"
        write_rows(big, rows)
        print(f"{big.name}: {len(rows):,} rows, {args.configs:,} configurations, "
              f"{big.stat().st_size / 1e6:.1f} MB")
        text = []
        _timed(f"wrn table {big.name} --format csv", lambda: text.append(table_csv(big)))
        print(f"  checked {check_table(text[0], rows):,} configurations against numpy: correct")
        few = out / "results-few.csv"
        write_rows(few, synthetic_rows(2 * args.plot_configs, args.plot_configs))
        for path in (few, big):
            _timed(f"wrn plot {path.name} --formats png",
                   lambda: plot.main([str(path), "--out", str(out / f"plots-{path.stem}"),
                                      "--formats", "png"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
