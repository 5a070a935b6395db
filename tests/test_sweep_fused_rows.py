"""A fused run (model.copies: S) trains S seeds: results.csv gets one row per seed, so the
mean ± std over seeds counts each of them."""

from __future__ import annotations

from wrn.report.results import RESULTS_FILE, aggregate, load_results
from wrn.files import atomic_write_json
from wrn.sweep.results import refresh_results
from wrn.sweep.state import RUNS_DIR, write_run_files


def _record(seed, best, status="finished", **extra):
    return {"status": status, "error": None, "model": "wrn-10-1", "family": "wrn", "depth": 10,
            "widen_factor": 1, "dropout": 0.0, "params": 77850, "macs": 12_000_000,
            "best_val_acc": best, "final_val_acc": best, "test_acc": best - 0.01,
            "test_acc_best": best - 0.02, "epochs": 2, "max_epochs": 2, "seed": seed,
            "wall_seconds": 10.0, "images_per_sec": 100.0, "device": "cpu", **extra}


def test_a_fused_run_gives_one_row_per_seed_and_a_plain_run_one(tmp_path):
    fused = tmp_path / RUNS_DIR / "wrn-10-1-s0-aaaa0000"
    sweep = {"run_id": fused.name, "config": "depth=10", "index": 0, "swept": {"seed_everything": 0},
             "swept_keys": ["seed_everything"], "identity": {"model": "wrn-10-1", "seed": 0}}
    write_run_files(fused, {}, sweep)
    atomic_write_json(fused / "metrics.json", _record(0, 0.55, copies=2,
                                                      copy_dirs=["seed-0", "seed-1"]))
    atomic_write_json(fused / "seed-0" / "metrics.json", _record(0, 0.50))
    atomic_write_json(fused / "seed-1" / "metrics.json", _record(1, 0.60))
    single = tmp_path / RUNS_DIR / "wrn-10-1-s2-bbbb0000"
    write_run_files(single, {}, {**sweep, "run_id": single.name, "index": 1,
                                 "swept": {"seed_everything": 2}})
    atomic_write_json(single / "metrics.json", _record(2, 0.70))

    rows = refresh_results(tmp_path, report=lambda message: None)

    assert [(row["run_id"], row["seed_everything"], row["best_val_acc"]) for row in rows] == [
        (f"{fused.name}/seed-0", 0, 0.50), (f"{fused.name}/seed-1", 1, 0.60),
        (single.name, 2, 0.70)]
    assert rows[0]["run_dir"].endswith("seed-0")  # where that seed's epochs.jsonl lies
    [group] = aggregate(load_results(tmp_path / RESULTS_FILE).runs)
    assert group.n == 3
    assert group.metric == "test_acc"
    assert abs(group.error_mean - 41.0) < 1e-9  # percent; test accuracies 0.49, 0.59, 0.69


def test_the_report_reads_a_fused_run_folder_as_the_sweep_rows_it(tmp_path):
    fused = tmp_path / RUNS_DIR / "wrn-10-1-s0-aaaa0000"
    write_run_files(fused, {}, {"run_id": fused.name, "config": "depth=10", "index": 0, "swept": {},
                                "swept_keys": [], "identity": {"model": "wrn-10-1", "seed": 0}})
    atomic_write_json(fused / "metrics.json", _record(0, 0.55, copies=2, copy_dirs=["seed-0", "seed-1"]))
    atomic_write_json(fused / "seed-0" / "metrics.json", _record(0, 0.50))
    atomic_write_json(fused / "seed-1" / "metrics.json", _record(1, 0.60))
    refresh_results(tmp_path, report=lambda message: None)

    def seen(runs):
        return [(run.seed, run.best_val_acc, run.test_acc, run.run_dir.resolve()) for run in runs]

    assert seen(load_results(fused).runs) == seen(load_results(tmp_path / RESULTS_FILE).runs)
    assert [run.seed for run in load_results(fused).runs] == ["0", "1"]
