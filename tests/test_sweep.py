"""wrn sweep: spec expansion and validation, tiny local and Ray sweeps on a generated image tree,
failure records, resume after an interruption or a SIGKILL, results.csv and the summary.

Every training run here is WRN-10-1 for one epoch on 60 images (a few seconds on 2 CPU cores);
the sweeps are called in-process (`wrn.sweep.cli.main`), so the `wrn fit` parser is built once.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import REPO, make_image_tree, wrn_data_root
from wrn.errors import one_line_error
from wrn.files import atomic_write_json
from wrn.rundir import read_metrics
from wrn.sweep import cli as sweep_cli
from wrn.sweep.plan import make_plan
from wrn.report.results import RESULT_COLUMNS, RESULTS_FILE
from wrn.sweep.runner import attempts_allowed
from wrn.sweep.spec import expand, load_spec
from wrn.rundir import FAILED, INTERRUPTED, run_state
from wrn.sweep.state import LOG_FILE, RUNS_DIR

TINY_RUN = {  # one epoch of WRN-10-1 on 3 classes x 20 images, 20 of them for validation
    "seed_everything": 0,
    "trainer": {"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False,
                "enable_model_summary": False, "log_every_n_steps": 1},
    "model": {"name": "wrn-10-1"},
    "data": {"subset": 20, "val_size": 20, "batch_size": 16, "num_workers": 0, "download": False},
}
SHIPPED_RUNS = {"quick.yaml": 8, "paper-grid.yaml": 42, "budget-grid.yaml": 14, "ablations.yaml": 33,
                "h100-budget.yaml": 12, "h100-budget-resnet-1202.yaml": 1}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_image_tree(tmp_path_factory.mktemp("tree"), classes=3, per_class=20)


def write_spec(folder: Path, data_root: Path, **spec) -> Path:
    return helpers.write_spec(folder, TINY_RUN, data_root, **spec)


def sweep(*argv) -> int:
    return sweep_cli.main([str(arg) for arg in argv])


def result_rows(out: Path) -> tuple[list[str], list[dict]]:
    with open(out / RESULTS_FILE, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def logs(out: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in sorted((out / RUNS_DIR).glob(f"*/{LOG_FILE}"))}


def attempts(log_text: str) -> list[str]:
    """The command line of every attempt the log records."""
    return [line for line in log_text.splitlines() if line.startswith("=== ")]


def record_stamps(out: Path) -> dict[str, float]:
    files = [*(out / RUNS_DIR).glob("*/log.txt"), *(out / RUNS_DIR).glob("*/metrics.json")]
    return {str(p): p.stat().st_mtime_ns for p in files}


# ----------------------------------------------------------------------------- specs, no runs


def test_expansion_is_deterministic_with_seeds_slowest(tmp_path, tree):
    spec = load_spec(write_spec(
        tmp_path, tree, seeds=[0, 1], fixed={"trainer.max_epochs": 2},
        grid={"model.depth": [10, 16], "model.widen_factor": [1, 2]},
        points=[{"model.name": "resnet-20"}, {"model.depth": 10, "model.widen_factor": 1}],
        exclude=[{"model.depth": 16, "model.widen_factor": 2}]))
    points = expand(spec)
    labels = [p.label for p in points]
    per_seed = ["model.depth=10,model.widen_factor=1", "model.depth=10,model.widen_factor=2",
                "model.depth=16,model.widen_factor=1", "model.name=resnet-20"]
    assert labels == per_seed * 2  # the duplicate point is dropped, the excluded one is gone
    assert [p.seed for p in points] == [0] * 4 + [1] * 4
    assert all(p.overrides["trainer.max_epochs"] == 2 for p in points)  # fixed: not in the label
    assert points[0].nested() == {"trainer": {"max_epochs": 2}, "model": {"depth": 10, "widen_factor": 1},
                                  "seed_everything": 0}
    assert [p.digest for p in expand(spec)] == [p.digest for p in points]
    assert len({p.digest for p in points}) == len(points)


@pytest.mark.parametrize("name", sorted(SHIPPED_RUNS))
def test_shipped_specs_parse_and_check(name):
    plan = make_plan(load_spec(REPO / "sweeps" / name), [])
    assert len(plan.runs) == SHIPPED_RUNS[name] and not plan.skipped
    models = {run.identity["model"] for run in plan.runs}
    if name in ("paper-grid.yaml", "budget-grid.yaml"):
        assert models == {"wrn-40-1", "wrn-40-2", "wrn-40-4", "wrn-40-8", "wrn-28-10", "wrn-28-12",
                          "wrn-22-8", "wrn-22-10", "wrn-16-8", "wrn-16-10", "resnet-110",
                          "resnet-1202", "preact-resnet-164"}
    if name.startswith("h100-budget"):  # Table 4 and the baselines, one schedule, ResNet-1202 apart
        table4 = {"wrn-40-1", "wrn-40-2", "wrn-40-4", "wrn-40-8", "wrn-28-10", "wrn-28-12",
                  "wrn-22-8", "wrn-22-10", "wrn-16-8", "wrn-16-10", "resnet-110", "preact-resnet-164"}
        assert models == (table4 if name == "h100-budget.yaml" else {"resnet-1202"})
        assert {(run.settings["trainer.max_epochs"], run.settings["model.optim.schedule"])
                for run in plan.runs} == {(5, "onecycle")}


def test_dry_run_lists_the_points_and_skips_and_runs_nothing(tmp_path, tree, capsys):
    spec = write_spec(tmp_path, tree, seeds=[0], grid={"model.depth": [10, 16]},
                      points=[{"model.depth": 28, "model.arch.block": "B(3,3,3)"}])
    out = tmp_path / "out"
    assert sweep("run", spec, "--out", out, "--dry-run") == 0
    printed = capsys.readouterr().out
    plan = make_plan(load_spec(spec), [])
    listed = [line.split()[0] for line in printed.splitlines()[2:] if line.startswith(("wrn-", "resnet-"))]
    assert listed == [run.run_id for run in plan.runs] == ["wrn-10-1-s0-" + plan.runs[0].point.digest,
                                                           "wrn-16-1-s0-" + plan.runs[1].point.digest]
    assert "skipped  model.arch.block=B(3,3,3),model.depth=28 (seeds 0): depth=28 is invalid" in printed
    assert not out.exists()


SPEC_ERRORS = {
    "unknown top-level key": ({"grdi": {"model.depth": [10]}}, [], "unknown top-level key 'grdi'"),
    "grid value not a list": ({"grid": {"model.depth": 16}}, [], r"grid\['model.depth'\] must be a list"),
    "empty grid": ({"grid": {}}, [], "empty sweep"),
    "unknown config key": ({"grid": {"model.dept": [10]}}, [], "model.dept"),
    "wrong type": ({"grid": {"model.depth": ["ten"]}}, [], "model.depth"),
    "unknown pass-through key": ({"grid": {"model.depth": [10]}}, ["--trainer.max_epoks", "1"],
                                 "trainer.max_epoks"),
}


@pytest.mark.parametrize("case", sorted(SPEC_ERRORS))
def test_spec_errors_are_one_line_and_run_nothing(tmp_path, tree, case):
    spec_fields, passthrough, message = SPEC_ERRORS[case]
    spec = write_spec(tmp_path, tree, **spec_fields)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message) as info:
        sweep("run", spec, "--out", out, *passthrough)
    assert "\n" not in one_line_error(info.value)
    assert not out.exists()


@pytest.mark.slow
def test_spec_error_exits_2_with_one_line_on_the_command_line(tmp_path, tree):
    spec = write_spec(tmp_path, tree, grid={"model.depth": 10})
    done = subprocess.run([sys.executable, "-m", "wrn", "sweep", "run", str(spec), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "grid['model.depth'] must be a list" in done.stderr


def test_run_states_and_retry_budget(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    record = {"status": "running", "model": "wrn-10-1", "epochs": 3, "max_epochs": 8}
    atomic_write_json(run_dir / "metrics.json", record)
    assert run_state(run_dir).state == INTERRUPTED
    atomic_write_json(run_dir / "metrics.json", {**record, "status": "interrupted",
                                                 "error": "interrupted by SIGINT (Ctrl-C) (epoch 3)"})
    assert run_state(run_dir).state == INTERRUPTED  # stopped by hand, not broken
    atomic_write_json(run_dir / "metrics.json", {**record, "status": "failed", "error": "FloatingPointError"})
    status = run_state(run_dir)
    assert status.state == FAILED and attempts_allowed(status, 1) == 1 and attempts_allowed(status, 0) == 0


# ----------------------------------------------------------------------------- sweeps that run


@pytest.mark.slow
@pytest.mark.usefixtures("warm_sweep_runs")
def test_local_sweep_rerun_resume_and_rebuilt_results(tmp_path, tree, capsys):
    spec = write_spec(tmp_path, tree, seeds=[0, 1], grid={"model.depth": [10, 16]})
    out = tmp_path / "out"
    assert sweep("run", spec, "--out", out) == 0
    columns, rows = result_rows(out)
    assert columns == [*RESULT_COLUMNS, "model.depth", "seed_everything"]
    assert [(r["status"], r["model"], r["seed"]) for r in rows] == [
        ("finished", "wrn-10-1", "0"), ("finished", "wrn-16-1", "0"),
        ("finished", "wrn-10-1", "1"), ("finished", "wrn-16-1", "1")]
    assert {r["config"] for r in rows} == {"model.depth=10", "model.depth=16"}
    assert all((out / r["run_dir"] / "metrics.json").is_file() for r in rows)

    stamps = record_stamps(out)
    assert sweep("run", spec, "--out", out) == 0
    assert record_stamps(out) == stamps  # nothing ran again
    assert all(len(attempts(text)) == 1 for text in logs(out).values())

    interrupted = out / rows[0]["run_dir"]  # as a kill would leave it: running, with a checkpoint
    atomic_write_json(interrupted / "metrics.json", {**read_metrics(interrupted), "status": "running"})
    assert sweep("run", spec, "--out", out) == 0
    resumed = attempts(logs(out)[interrupted.name])
    assert len(resumed) == 2 and "--ckpt_path" in resumed[1]
    assert read_metrics(interrupted)["status"] == "finished"

    text = (out / RESULTS_FILE).read_text()
    (out / RESULTS_FILE).write_text(text[: len(text) // 2])  # truncated
    capsys.readouterr()
    assert sweep("summarize", out) == 0
    captured = capsys.readouterr()
    assert "corrupt" in captured.err and "rebuilt from 4 run directories" in captured.err
    assert (out / RESULTS_FILE).read_text() == text
    table = captured.out.splitlines()
    assert any(line.startswith("model.depth=10") and " 2 " in line and "±" in line for line in table)


@pytest.mark.slow
def test_ray_sweep_into_a_fresh_directory(tmp_path, tree):
    import ray  # noqa: F401 - installed with .[ray], as CI does: a broken Ray is a failure
    spec = write_spec(tmp_path, tree, seeds=[0, 1], grid={"model.depth": [10, 16]})
    out = tmp_path / "ray-out"
    assert sweep("run", spec, "--out", out, "--executor", "ray") == 0
    _, rows = result_rows(out)
    assert len(rows) == 4 and all(r["status"] == "finished" for r in rows)
    stamps = record_stamps(out)
    assert sweep("run", spec, "--out", out, "--executor", "ray") == 0
    assert record_stamps(out) == stamps


@pytest.mark.slow
@pytest.mark.usefixtures("warm_sweep_runs")
def test_failed_run_is_recorded_retried_and_the_others_finish(tmp_path, tree, capsys):
    spec = write_spec(tmp_path, tree, points=[{}, {"model.optim.lr": 1.0e20}])
    out = tmp_path / "out"
    assert sweep("run", spec, "--out", out, "--max-retries", "1") == 1
    _, rows = result_rows(out)
    by_config = {r["config"]: r for r in rows}
    assert by_config["base"]["status"] == "finished"
    failed = by_config["model.optim.lr=1e+20"]
    assert failed["status"] == "failed" and "NaN" in failed["error"], failed["error"]
    assert len(attempts(logs(out)[Path(failed["run_dir"]).name])) == 2  # retried once
    assert len(attempts(logs(out)[Path(by_config["base"]["run_dir"]).name])) == 1
    capsys.readouterr()
    assert sweep("summarize", out) == 0
    table = capsys.readouterr().out
    assert "base" in table and "model.optim.lr=1e+20" in table
    assert "±" not in table  # one finished seed: a mean without a spread


@pytest.mark.slow
@pytest.mark.usefixtures("warm_sweep_runs")
def test_sweep_on_the_real_cifar10_tree(tmp_path):
    root = wrn_data_root()
    spec = write_spec(tmp_path, root, fixed={"data.val_size": 40}, points=[{}])
    out = tmp_path / "out"
    assert sweep("run", spec, "--out", out) == 0
    _, rows = result_rows(out)
    assert [r["status"] for r in rows] == ["finished"] and float(rows[0]["params"]) > 0


PLACEMENT_SHIM = '''
import atexit, json, os, sys, time
if "--trainer.default_root_dir" in sys.argv:
    folder = sys.argv[sys.argv.index("--trainer.default_root_dir") + 1]
    os.makedirs(folder, exist_ok=True)
    seen = {"device": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time()}
    def stop():
        seen["end"] = time.time()
        with open(os.path.join(folder, "placement.json"), "w") as f:
            json.dump(seen, f)
    atexit.register(stop)
'''


@pytest.mark.slow
@pytest.mark.usefixtures("warm_sweep_runs")
def test_runs_are_placed_one_per_gpu_of_the_device_list(tmp_path, tree, monkeypatch):
    # The devices the sweep sees are injected (this machine has none); each run's process
    # records the CUDA_VISIBLE_DEVICES it was given and when it ran.
    import json

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Test GPU")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(PLACEMENT_SHIM)
    monkeypatch.setenv("PYTHONPATH", f"{shim}{os.pathsep}{REPO}")
    spec = write_spec(tmp_path, tree, seeds=[0, 1, 2], points=[{"trainer.accelerator": "cpu"}])
    out = tmp_path / "out"
    assert sweep("run", spec, "--out", out, "--gpus", "0,1") == 0
    placed = [json.loads(p.read_text()) for p in (out / RUNS_DIR).glob("*/placement.json")]
    assert len(placed) == 3 and {p["device"] for p in placed} == {"0", "1"}
    for a in placed:  # never two runs on one device at once
        assert not any(b is not a and b["device"] == a["device"] and b["start"] < a["end"]
                       and a["start"] < b["end"] for b in placed)
    assert sum(min(a["end"], b["end"]) > max(a["start"], b["start"])
               for i, a in enumerate(placed) for b in placed[i + 1:]) >= 1  # two ran at once


def test_trials_per_gpu_share_each_device_of_the_list():
    from wrn.sweep.executors import LocalExecutor

    executor = LocalExecutor([0, 3], trials_per_gpu=2)
    assert executor.capacity == 4
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in executor.slots] == ["0", "0", "3", "3"]
    assert LocalExecutor([], trials_per_gpu=2).slots == [{}]  # the CPU: one run at a time
