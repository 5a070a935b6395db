"""benchmarks/fit_vs_step.py runs `wrn fit` and the bare step on CPU and writes a complete record."""

import json
import math
import sys

import pytest

from tests.helpers import make_image_tree
from tests.test_benchmark import load_script

ROW_KEYS = {"name", "batch_size", "step_images_per_sec", "fit_images_per_sec", "ratio",
            "syncs_per_step", "epoch_seconds", "validation_seconds", "checkpoint_seconds"}
EPOCHS = 2


@pytest.fixture(scope="module")
def fit_vs_step():
    yield load_script("fit_vs_step")
    for name in ("fit_vs_step", "loop_overhead", "throughput"):
        sys.modules.pop(name, None)


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_cpu_run_writes_the_record(fit_vs_step, tmp_path, capsys):
    tree = make_image_tree(tmp_path / "data", classes=10, per_class=6)
    fit_vs_step.main(["--data-root", str(tree), "--models", "wrn-10-1", "--subset", "100", "wrn-10-1=6",
                      "--val-size", "10", "--batch-size", "10", "--epochs", str(EPOCHS), "--graph",
                      "--channels-last", "auto", "on", "--out", str(tmp_path / "out"),
                      "--fit-args", "--trainer.enable_progress_bar false", "--threads", "0"])
    [path] = (tmp_path / "out").glob("fit-vs-step-cpu*.json")
    record = json.loads(path.read_text())
    assert record["device"].startswith("CPU") and record["torch"]
    [row] = record["models"]
    assert ROW_KEYS <= row.keys() and row["name"] == "wrn-10-1" and row["batch_size"] == 10
    for key in ("step_images_per_sec", "fit_images_per_sec", "ratio", "graph_step_images_per_sec"):
        assert positive(row[key]), key
    assert row["ratio"] == pytest.approx(row["fit_images_per_sec"] / row["step_images_per_sec"])
    assert row["syncs_per_step"] is None  # counted on CUDA only
    assert row["subset"] == 6 and row["val_size"] == 10
    assert row["steps_per_epoch"] == 5 and row["train_images_per_epoch"] == 50  # 60 - 10 held out
    for key in ("epoch_seconds", "validation_seconds", "checkpoint_seconds", "rest_seconds"):
        assert len(row[key]) == EPOCHS and all(positive(s) for s in row[key]), key
    for epoch, validation, checkpoint in zip(row["epoch_seconds"], row["validation_seconds"],
                                             row["checkpoint_seconds"]):
        assert validation + checkpoint < epoch  # parts of the epoch, timed apart from it
    assert set(row["step_images_per_sec_by_channels_last"]) == {"auto", "on"}
    assert all(positive(v) for v in row["step_images_per_sec_by_channels_last"].values())
    printed = capsys.readouterr().out
    assert "| wrn-10-1 | 10 | 50 |" in printed and str(path) in printed


@pytest.mark.parametrize("argv,named", [
    (["--data-root", "nowhere"], "nowhere"),
    (["--subset", "wrn-10-1=six"], "wrn-10-1=six"),
    (["--subset", "wrn-10-1=6"], "plain N")])
def test_bad_arguments_are_usage_errors(fit_vs_step, tmp_path, capsys, argv, named):
    make_image_tree(tmp_path / "data", classes=2, per_class=1)
    with pytest.raises(SystemExit) as exit_info:
        fit_vs_step.main(["--data-root", str(tmp_path / "data"), *argv])
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err
