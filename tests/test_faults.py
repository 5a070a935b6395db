"""Faults, as a user meets them: killed training and sweeps, damaged records, bad input, unsafe
files. Real `wrn` processes, real files, real signals; no mocks of the code under test.

Cases covered elsewhere are not repeated here (see the table in the issue):
tests/test_train.py::test_bad_configs_fail_with_one_line (unknown model, invalid depth,
dropout 1.5, missing data root, unknown/mistyped keys), tests/test_sweep.py (spec errors,
SIGKILL of a one-run sweep, damaged results.csv, NaN run in a sweep), tests/test_data.py
(truncated or bit-flipped cache arrays).
"""

from __future__ import annotations

import ast
import csv
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests import helpers
from tests.helpers import REPO, checkpoint_epoch, make_image_tree, wait_for, warm, wrn_here
from wrn.data import CIFARData
from wrn.files import append_jsonl, read_jsonl
from wrn.rundir import read_metrics
from wrn.sweep import cli as sweep_cli
from wrn.report.results import RESULTS_FILE, results_problem
from wrn.rundir import INTERRUPTED, run_state
from wrn.sweep.state import LOG_FILE, RUNS_DIR

TINY_FIT = ["--model.name", "wrn-10-1", "--data.batch_size", "16", "--data.val_size", "32",
            "--data.num_workers", "0", "--data.download", "false", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.logger", "false"]
TINY_SWEEP_BASE = {  # one epoch of WRN-10-1 on the module's tree
    "seed_everything": 0,
    "trainer": {"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False,
                "enable_model_summary": False},
    "model": {"name": "wrn-10-1"},
    "data": {"val_size": 32, "batch_size": 16, "num_workers": 0, "download": False},
}


# ----------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """4 classes x 40 images: 128 training images, 8 steps of 16 per epoch (about a second)."""
    return make_image_tree(tmp_path_factory.mktemp("tree"), classes=4, per_class=40)


def wrn_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "WRN_DEBUG"}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def shim_env(shim: Path) -> dict[str, str]:
    """The environment of a process whose sitecustomize.py in `shim` runs at start-up. The
    repository goes on PYTHONPATH too: a sitecustomize that imports wrn runs before the working
    directory joins sys.path, and would otherwise get an installed copy of the package."""
    return wrn_env(PYTHONPATH=os.pathsep.join([str(shim), str(REPO)]))


def wrn(*args, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`wrn ARGS` in a process of its own (forked warm: tests.helpers.warm)."""
    return warm().run(args, env=env or wrn_env(), timeout=timeout)


def fit_args(tree: Path, run_dir: Path, *extra) -> list[str]:
    """`wrn fit` arguments: WRN-10-1 on `tree`, on the CPU, into `run_dir`."""
    return ["fit", *TINY_FIT, "--data.root", str(tree), "--trainer.default_root_dir", str(run_dir),
            *map(str, extra)]


def fit(tree: Path, run_dir: Path, *extra, env: dict | None = None) -> subprocess.CompletedProcess:
    return wrn(*fit_args(tree, run_dir, *extra), env=env)


def fit_here(tree: Path, run_dir: Path, *extra):
    """`fit` in this process (see tests.helpers.wrn_here)."""
    return wrn_here(*fit_args(tree, run_dir, *extra))


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """Exit `code`, exactly one stderr line starting with 'error:', holding every needle; no traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == code and len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def epochs_of(run_dir: Path) -> list[dict]:
    return read_jsonl(run_dir / "epochs.jsonl")[0]


def write_spec(folder: Path, data_root: Path, **spec) -> Path:
    return helpers.write_spec(folder, TINY_SWEEP_BASE, data_root, **spec)


def result_rows(out: Path) -> list[dict]:
    with open(out / RESULTS_FILE, newline="") as f:
        return list(csv.DictReader(f))


def attempts(run_dir: Path) -> list[str]:
    """The command line of every attempt the run's log.txt records."""
    return [line for line in (run_dir / LOG_FILE).read_text().splitlines() if line.startswith("=== ")]


def run_dir_of(out: Path, row: dict) -> Path:
    return out / row["run_dir"]


# ----------------------------------------------------------------------------------- 1. interruption


HOLD_SHIM = '''
import time
import wrn.module

_start = wrn.module.LitClassifier.on_train_epoch_start


def on_train_epoch_start(self):
    _start(self)
    if self.current_epoch >= {epoch}:
        open({marker!r}, "w").close()
        while True:  # until killed
            time.sleep(1)


wrn.module.LitClassifier.on_train_epoch_start = on_train_epoch_start
'''


@pytest.mark.slow
@pytest.mark.parametrize("loader,workers", [("dataloader", 0), ("dataloader", 2), ("gpu", 0)])
def test_fit_sigkilled_mid_run_resumes_to_the_uninterrupted_result(tmp_path, tree, loader, workers):
    # Deterministic on the CPU, same seed. Both loaders make an epoch's data a function of
    # (seed, epoch): `gpu` (a device loader, here on the CPU) by construction, the DataLoader
    # through a (seed, epoch)-seeded sampler that hands each sample its crop-and-flip seed, so
    # worker processes change nothing; dropout through a per-epoch reseed of the global RNG
    # (Lightning's checkpoints hold no RNG state). The uninterrupted run loads in-process; the
    # killed and resumed runs with `workers` worker processes.
    settings = ["--trainer.max_epochs", 5, "--trainer.deterministic", "true", "--seed_everything", 3,
                "--data.loader", loader, "--model.dropout", 0.3]  # dropout: its masks resume too
    whole = tmp_path / "whole"
    done = fit(tree, whole, *settings, "--data.num_workers", 0)
    settings += ["--data.num_workers", workers]
    assert done.returncode == 0, done.stderr[-3000:]
    # last.ckpt is the latest epoch even when val_acc stopped improving (here it saturates early).
    assert checkpoint_epoch(whole / "checkpoints" / "last.ckpt") == 4

    # The killed process holds at the start of epoch 2, so the kill lands mid-run however fast
    # the machine; the hold changes nothing the run computes.
    shim = tmp_path / "shim"
    shim.mkdir()
    held = tmp_path / "held"
    (shim / "sitecustomize.py").write_text(HOLD_SHIM.format(epoch=2, marker=str(held)))
    killed = tmp_path / "killed"
    process = warm().start(fit_args(tree, killed, *settings), env=shim_env(shim))
    try:  # two epochs recorded and a checkpoint: the process is held at the start of epoch 2
        wait_for(held.exists, "the run to reach epoch 2", process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    record = read_metrics(killed)
    assert record["status"] == "running" and record["epochs"] == 2, record  # killed mid-run
    assert checkpoint_epoch(killed / "checkpoints" / "last.ckpt") == 1

    resumed = fit(tree, killed, *settings, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = read_metrics(whole), read_metrics(killed)
    assert got["status"] == "finished"
    for key in ("best_val_acc", "final_val_acc", "global_step", "epochs"):
        assert got[key] == expected[key], key
    lines, expected_lines = epochs_of(killed), epochs_of(whole)
    assert [line["epoch"] for line in lines] == [0, 1, 2, 3, 4]  # each epoch once
    for key in ("train_loss", "val_loss", "val_acc", "step"):
        assert [line[key] for line in lines] == [line[key] for line in expected_lines], key


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
@pytest.mark.usefixtures("warm_sweep_runs")
def test_sweep_sigkilled_mid_run_keeps_results_whole_and_resumes_only_the_unfinished(tmp_path, tree):
    # A 1-epoch run that finishes, then a 3-epoch run held at the start of its epoch 1 (in flight
    # whatever the machine's speed) when the sweep dies.
    spec = write_spec(tmp_path, tree, points=[{"trainer.max_epochs": 1}, {"trainer.max_epochs": 3}])
    out, log, shim = tmp_path / "out", tmp_path / "sweep.log", tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(HOLD_SHIM.format(epoch=1, marker=str(tmp_path / "held")))
    with open(log, "w") as output:
        driver = warm().start(["sweep", "run", spec, "--out", out],
                              env=wrn_env(PYTHONPATH=f"{shim}{os.pathsep}{REPO}"),
                              stdout=output, stderr=subprocess.STDOUT)
    try:
        def long_run_checkpointed():
            for run_dir in (out / RUNS_DIR).glob("*"):
                if len(epochs_of(run_dir)) >= 1 and (run_dir / "checkpoints" / "last.ckpt").exists() \
                        and (read_metrics(run_dir) or {}).get("max_epochs") == 3:
                    return run_dir
            return None
        long_run = wait_for(long_run_checkpointed, "the long run's first checkpoint", driver, log=log)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        # The training child dies with the sweep (PDEATHSIG); its lock goes with it.
        wait_for(lambda: run_state(long_run).state == INTERRUPTED, "the run to die with the sweep")
    finally:
        driver.kill()
        driver.wait()

    # results.csv as the kill left it: whole, one row per run that had ended, nothing half-written.
    assert results_problem(out / RESULTS_FILE) is None
    rows = result_rows(out)
    assert [(row["status"], row["config"]) for row in rows] == [("finished", "trainer.max_epochs=1")]
    short_run = run_dir_of(out, rows[0])
    stamp = (short_run / "metrics.json").stat().st_mtime_ns

    # Re-run with the same arguments (other settings would be refused, the run folder kept).
    max_epochs = 3
    assert sweep_cli.main(["run", str(spec), "--out", str(out)]) == 0
    rows = result_rows(out)
    assert results_problem(out / RESULTS_FILE) is None
    assert len(rows) == 2 and len({row["run_id"] for row in rows}) == 2
    assert all(row["status"] == "finished" for row in rows), rows
    assert len(attempts(short_run)) == 1 and (short_run / "metrics.json").stat().st_mtime_ns == stamp
    retried = attempts(long_run)
    assert len(retried) == 2 and "--ckpt_path" in retried[1] and "last.ckpt" in retried[1]
    epochs = [line["epoch"] for line in epochs_of(long_run)]
    assert epochs == list(range(max_epochs))  # each epoch once, none lost


@pytest.mark.slow
@pytest.mark.usefixtures("warm_sweep_runs")
def test_damaged_metrics_json_and_results_csv_are_reported_then_rebuilt(tmp_path, tree, capsys):
    spec = write_spec(tmp_path, tree, points=[{}])
    out = tmp_path / "out"
    assert sweep_cli.main(["run", str(spec), "--out", str(out)]) == 0
    run_dir = run_dir_of(out, result_rows(out)[0])
    good = read_metrics(run_dir)
    text = (run_dir / "metrics.json").read_text()
    (run_dir / "metrics.json").write_text(text[: len(text) // 3])  # truncated
    capsys.readouterr()

    assert sweep_cli.main(["status", str(spec), "--out", str(out)]) == 0
    assert "corrupt run record" in capsys.readouterr().out
    assert sweep_cli.main(["summarize", str(out), "--format", "csv"]) == 0
    [summary] = csv.DictReader(capsys.readouterr().out.splitlines())
    assert (summary["finished"], summary["failed"]) == ("0", "1")  # counted as failed, not dropped
    [row] = result_rows(out)
    assert row["status"] == "failed" and "corrupt run record" in row["error"]

    # The next run resumes it from last.ckpt (already at max_epochs) and rewrites the record.
    assert sweep_cli.main(["run", str(spec), "--out", str(out)]) == 0
    rebuilt = read_metrics(run_dir)
    assert rebuilt["status"] == "finished"
    for key in ("best_val_acc", "final_val_acc", "global_step", "epochs", "params", "model"):
        assert rebuilt[key] == good[key], key
    assert "corrupt run record" in (run_dir / LOG_FILE).read_text()  # the fit said what it rewrote
    [row] = result_rows(out)
    assert row["status"] == "finished" and row["error"] == ""

    # results.csv cut mid-row (tests/test_sweep.py covers `summarize`): status says so, run rebuilds.
    whole = (out / RESULTS_FILE).read_text()
    (out / RESULTS_FILE).write_text(whole + whole.splitlines()[1][:25])
    capsys.readouterr()
    assert sweep_cli.main(["status", str(spec), "--out", str(out)]) == 0
    assert "results.csv is corrupt (truncated at line 3)" in capsys.readouterr().out
    assert sweep_cli.main(["run", str(spec), "--out", str(out)]) == 0  # nothing left to run
    assert "was corrupt (truncated at line 3); rebuilt from 1 run directory" in capsys.readouterr().out
    assert (out / RESULTS_FILE).read_text() == whole


def test_truncated_epochs_jsonl_line_is_reported_and_the_next_line_survives(tmp_path):
    path = tmp_path / "epochs.jsonl"
    append_jsonl(path, {"epoch": 0, "val_acc": 0.5})
    with open(path, "a") as f:
        f.write('{"epoch": 1, "val_a')  # a write cut short
    append_jsonl(path, {"epoch": 1, "val_acc": 0.75})
    records, problems = read_jsonl(path)
    assert records == [{"epoch": 0, "val_acc": 0.5}, {"epoch": 1, "val_acc": 0.75}]
    assert len(problems) == 1 and "epochs.jsonl:2: unreadable line" in problems[0]


def cache_data(root: Path) -> CIFARData:
    return CIFARData(root=str(root), batch_size=8, val_size=6, num_workers=0, download=False,
                     cache_dir=str(root / "cache"))


class _Payload:
    """Unpickling this runs open(marker, 'w'): proof of execution if a loader ever unpickles it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("damage", ["sidecar truncated", "labels truncated", "pickled object array"])
def test_damaged_cache_file_is_reported_and_rebuilt_never_unpickled(tmp_path, damage):
    make_image_tree(tmp_path, classes=3, per_class=10)
    first = cache_data(tmp_path)
    first.setup("fit")
    marker = tmp_path / "executed"
    [sidecar] = (tmp_path / "cache").glob("*.json")
    [labels] = (tmp_path / "cache").glob("*.labels.npy")
    [images] = (tmp_path / "cache").glob("*.images.npy")
    damaged = {"sidecar truncated": sidecar, "labels truncated": labels,
               "pickled object array": images}[damage]
    if damage == "pickled object array":
        np.save(images, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    else:
        damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.warns(UserWarning, match=rf"cache file .*{re.escape(damaged.name)} is damaged.*rebuilding"):
        rebuilt = cache_data(tmp_path)
        rebuilt.setup("fit")
    assert not marker.exists()
    assert torch.equal(rebuilt.train_set.images, first.train_set.images)
    assert torch.equal(rebuilt.train_set.labels, first.train_set.labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: read back silently
        cache_data(tmp_path).setup("fit")


def test_failed_figure_write_keeps_the_previous_figure(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from wrn.report import plot as plots

    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    [path] = plots.save_figure(figure, tmp_path / "curves", ["png"])
    before = path.read_bytes()

    def dies_halfway(self, fname, **kwargs):  # a path or an open file, as savefig takes
        if hasattr(fname, "write"):
            fname.write(b"\x89PNG half")
        else:
            with open(fname, "wb") as f:
                f.write(b"\x89PNG half")
        raise KeyboardInterrupt
    monkeypatch.setattr(Figure, "savefig", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        plots.save_figure(figure, tmp_path / "curves", ["png"])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]  # no temporary left


# ----------------------------------------------------------------------------------- 2. bad input


@pytest.mark.slow
@pytest.mark.parametrize("args,needles", [
    (["--model.widen_factor", "0"], ["widen_factor=0"]),
    (["--model.widen_factor", "-2"], ["widen_factor=-2"]),
    (["--model.dropout", "1.0"], ["dropout=1.0"]),
    (["--model.dropout", "-0.1"], ["dropout=-0.1"]),
    (["--data.dataset", "imagenet"], ["data.dataset", "imagenet"]),
], ids=["widen-0", "widen-negative", "dropout-1", "dropout-negative", "unknown-dataset"])
def test_bad_model_or_dataset_value_is_one_line_naming_it(tmp_path, tree, args, needles):
    assert_one_line_error(fit_here(tree, tmp_path / "run", *args), *needles)


def _empty(root: Path) -> Path:
    root.mkdir()
    return root


def _class_folders_without_train(root: Path) -> Path:
    make_image_tree(root / "tmp", classes=2, per_class=2)
    os.replace(root / "tmp" / "train", root / "data")
    return root / "data"


def _train_without_class_folders(root: Path) -> Path:
    (root / "data" / "train").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(root / "data" / "train" / "0000.png")
    return root / "data"


@pytest.mark.slow
@pytest.mark.parametrize("make_root,needles", [
    (_empty, ["no cifar10 data in", "--data.root"]),
    (_class_folders_without_train, ["holds class folders but no train/ folder"]),
    (_train_without_class_folders, ["has no class folders"]),
], ids=["empty", "class-folders-without-train", "train-without-class-folders"])
def test_data_root_with_the_wrong_content_is_one_line_naming_it(tmp_path, make_root, needles, monkeypatch):
    # On the slowest CPU too: a root that cannot hold the data is named before any estimate of
    # how long a 200-epoch run on it would take.
    monkeypatch.setattr("wrn.console.cpu_images_per_second", lambda model: 0.01)
    root = make_root(tmp_path / "root")
    result = wrn_here("fit", *TINY_FIT, "--data.root", root, "--trainer.default_root_dir", tmp_path / "run")
    assert_one_line_error(result, str(root), *needles)


def test_corrupt_image_is_one_line_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr("wrn.console.cpu_images_per_second", lambda model: 0.01)  # as above
    root = make_image_tree(tmp_path / "data", classes=3, per_class=4)
    bad = root / "train" / "class1" / "0002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but the rest is not an image")
    result = wrn_here("fit", *TINY_FIT, "--data.root", root, "--data.val_size", "2",
                 "--data.batch_size", "4", "--trainer.default_root_dir", tmp_path / "run")
    assert_one_line_error(result, f"cannot read image {bad}")


def test_nan_loss_stops_the_run_and_records_failed_with_epoch_and_step(tmp_path, tree):
    run_dir = tmp_path / "run"
    result = fit_here(tree, run_dir, "--model.optim.lr", "1e20", "--model.nan_check_every", "1",
                 "--trainer.max_epochs", "3")
    assert_one_line_error(result, "loss became NaN/inf", "lr 1e+20")
    record = read_metrics(run_dir)
    assert record["status"] == "failed" and record["epochs"] == 0
    assert re.search(r"FloatingPointError: .*\(epoch 0, step \d+\)$", record["error"]), record["error"]


def test_checkpoint_of_another_architecture_is_one_line_naming_both(tmp_path, tree):
    small = tmp_path / "small"
    assert fit_here(tree, small, "--trainer.max_epochs", "1").returncode == 0
    checkpoint = small / "checkpoints" / "last.ckpt"
    result = fit_here(tree, tmp_path / "wide", "--model.name", "wrn-10-2", "--ckpt_path", checkpoint)
    assert_one_line_error(result, str(checkpoint), "holds wrn-10-1", "asks for wrn-10-2",
                          "widen_factor: 1 vs 2")


@pytest.mark.slow
def test_wrn_debug_shows_the_traceback(tmp_path, tree):
    result = fit(tree, tmp_path / "run", "--model.widen_factor", "0", env=wrn_env(WRN_DEBUG="1"))
    assert result.returncode == 1 and "Traceback (most recent call last)" in result.stderr
    assert "widen_factor=0" in result.stderr.splitlines()[-1]


OOM_SHIM = '''
import sys
if any("/runs/{target}-" in arg for arg in sys.argv):  # only the fit process of that one run
    import torch
    import wrn.module

    def training_step(self, batch, batch_idx):
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB")

    wrn.module.LitClassifier.training_step = training_step
'''


@pytest.mark.slow
@pytest.mark.usefixtures("warm_sweep_runs")
def test_out_of_memory_run_is_recorded_failed_and_the_sweep_goes_on(tmp_path, tree, monkeypatch):
    # The real fit processes; a sitecustomize on PYTHONPATH makes the wrn-16-1 run's training
    # step raise the exception a CUDA allocation failure raises, on this CPU machine.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(OOM_SHIM.format(target="wrn-16-1"))
    spec = write_spec(tmp_path, tree, grid={"model.depth": [16, 10]})
    out = tmp_path / "out"
    monkeypatch.setenv("PYTHONPATH", shim_env(shim)["PYTHONPATH"])
    assert sweep_cli.main(["run", str(spec), "--out", str(out), "--max-retries", "0"]) == 1  # 1: some failed
    rows = {row["model"]: row for row in result_rows(out)}
    assert rows["wrn-10-1"]["status"] == "finished"
    oom = rows["wrn-16-1"]
    assert oom["status"] == "failed" and "CUDA out of memory. Tried to allocate 2.00 GiB" in oom["error"]
    record = read_metrics(run_dir_of(out, oom))
    assert record["status"] == "failed" and "OutOfMemoryError" in record["error"]
    assert "(epoch 0, step 0)" in record["error"]
    log = (run_dir_of(out, oom) / LOG_FILE).read_text()
    assert "error: CUDA out of memory" in log and "Traceback" not in log


# ----------------------------------------------------------------------------------- 3. safe by default


@pytest.mark.parametrize("where", ["--ckpt_path FILE", "--ckpt_path last"])
def test_checkpoint_holding_pickled_code_is_refused_not_run(tmp_path, tree, where):
    marker = tmp_path / "executed"
    run_dir = tmp_path / "run"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    # A real checkpoint's layout, plus one object whose unpickling would run code.
    torch.save({"epoch": 0, "global_step": 0, "state_dict": {}, "payload": _Payload(marker),
                "hyper_parameters": {"name": "wrn-10-1"}}, checkpoint)
    ckpt_arg = checkpoint if where == "--ckpt_path FILE" else "last"
    result = fit_here(tree, run_dir, "--ckpt_path", ckpt_arg)
    assert_one_line_error(result, "checkpoint refused by the safe loader", "weights_only=True")
    assert not marker.exists()


def test_truncated_checkpoint_is_one_line_naming_it(tmp_path, tree):
    checkpoint = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:2000])
    result = fit_here(tree, tmp_path / "run", "--ckpt_path", checkpoint)
    assert_one_line_error(result, str(checkpoint), "truncated or damaged")


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def calls(path: Path):
    """(dotted callee name, ast.Call) for every call in the file: `yaml.load`, `open`, `f.write_text`."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), node


def keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return ast.literal_eval(kw.value) if isinstance(kw.value, ast.Constant) else kw.value
    return None


def where(path: Path, call: ast.Call) -> str:
    return f"{path.relative_to(REPO)}:{call.lineno}"


def test_no_shell_and_no_unsafe_yaml_anywhere():
    shell, unsafe_yaml = [], []
    for path in python_files("wrn", "tests", "benchmarks"):
        for name, call in calls(path):
            if keyword(call, "shell") is True or name in ("os.system", "os.popen"):
                shell.append(where(path, call))
            if name.startswith("yaml.") and name.endswith(("load", "load_all")) \
                    and name not in ("yaml.safe_load", "yaml.safe_load_all"):
                unsafe_yaml.append(where(path, call))
    assert not shell and not unsafe_yaml, (shell, unsafe_yaml)


def test_yaml_with_python_tags_is_refused_not_run(tmp_path, tree):
    marker = tmp_path / "executed"
    tag = f"!!python/object/apply:builtins.open ['{marker}', 'w']"
    config = tmp_path / "evil.yaml"
    config.write_text(f"seed_everything: {tag}\n")
    result = fit_here(tree, tmp_path / "run", "--config", config)
    assert_one_line_error(result, "could not determine a constructor for the tag", "python/object/apply")
    spec = write_spec(tmp_path / "sweep", tree, points=[{}])
    spec.write_text(f"base: base.yaml\npoints:\n  - model.depth: {tag}\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        sweep_cli.main(["run", str(spec), "--out", str(tmp_path / "out")])
    assert not marker.exists()


def test_checkpoints_and_caches_load_without_pickle():
    unsafe = []
    for path in python_files("wrn"):
        for name, call in calls(path):
            if name == "torch.load" and keyword(call, "weights_only") is not True:
                unsafe.append(where(path, call))
            if name in ("np.load", "np.save") and keyword(call, "allow_pickle") is not False:
                unsafe.append(where(path, call))
    assert not unsafe, unsafe
    source = (REPO / "wrn" / "train.py").read_text()
    assert "cfg.weights_only = True" in source  # Lightning's own resume path loads weights only


# Every call in wrn/ that writes a file, and why it may: results and caches go through a temporary
# name and a rename; what is left is append-only logs, a lock, or scratch that nobody reads back.
WRITERS_ALLOWED = {
    ("wrn/files.py", "atomic_file"): "the atomic helper itself (mkstemp, fsync, os.replace)",
    ("wrn/files.py", "append_jsonl"): "epochs.jsonl: single-write appends; a cut line is reported",
    ("wrn/data/sources.py", "atomic_save_npy"): "np.save into files.atomic_file",
    ("wrn/rundir.py", "save_checkpoint"): "torch.save into files.atomic_file (previous last.ckpt kept)",
    ("wrn/train.py", "setup"): "config.yaml: parser.dump makes the text, rundir.write_config writes it",
    ("wrn/train.py", "parse_arguments"): "--print_config: parser.dump makes the text for stdout",
    ("wrn/report/plot.py", "save_figure"): "savefig into files.atomic_file",
    ("wrn/sweep/executors.py", "launch"): "log.txt: the run's output, appended",
    ("wrn/rundir.py", "acquire_lock"): ".lock: flock'ed, never read",
    ("wrn/sweep/plan.py", "make_plan"): "point files in a TemporaryDirectory, to check the spec",
}
WRITE_CALLS = re.compile(r"(^|\.)(open|fdopen|write_text|write_bytes|savefig|save|dump|to_csv|mkstemp)$")


def file_writes(path: Path) -> set[tuple[str, str]]:
    """(file, enclosing function or <module>) of every call in `path` that may write a file."""
    tree_ = ast.parse(path.read_text())
    enclosing = {}
    for function in ast.walk(tree_):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                enclosing[node] = function.name  # inner functions come later in the walk
    writes = set()
    for node in ast.walk(tree_):
        if not isinstance(node, ast.Call) or not WRITE_CALLS.search(ast.unparse(node.func)):
            continue
        name = ast.unparse(node.func)
        mode = node.args[1] if len(node.args) > 1 else next(
            (kw.value for kw in node.keywords if kw.arg == "mode"), None)
        mode = ast.literal_eval(mode) if isinstance(mode, ast.Constant) else None
        if name.endswith("open") and not name.endswith("fdopen") and mode in (None, "r", "rb"):
            continue  # reading
        writes.add((str(path.relative_to(REPO)), enclosing.get(node, "<module>")))
    return writes


def test_result_and_cache_files_are_written_to_a_temporary_name_and_renamed():
    found = set().union(*(file_writes(path) for path in python_files("wrn")))
    unexplained, gone = sorted(found - set(WRITERS_ALLOWED)), sorted(set(WRITERS_ALLOWED) - found)
    assert not unexplained, f"new direct file writes; make them atomic or explain them: {unexplained}"
    assert not gone, f"writers no longer in the code; drop them from WRITERS_ALLOWED: {gone}"
