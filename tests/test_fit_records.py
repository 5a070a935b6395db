"""What `wrn fit` and the evaluation commands leave behind: the test split at the end of a fit,
evaluation records that never touch the fit's files, configs that replay elsewhere, epoch metrics
in every log, --print_config showing what the run uses. Real `wrn` processes on a tiny tree."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, make_image_tree, wrn_here
from tests.test_faults import shim_env, wrn
from wrn.files import read_jsonl
from wrn.rundir import read_metrics

TINY = ["--model.name", "wrn-10-1", "--data.batch_size", "16", "--data.val_size", "16",
        "--data.num_workers", "0", "--data.download", "false", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """4 classes x 12 training images (2 steps of 16 per epoch) and 4 test images per class."""
    return make_image_tree(tmp_path_factory.mktemp("tree"), classes=4, per_class=12, test_per_class=4)


def files_of(run: Path) -> dict[str, bytes]:
    """Every file of the run but its evaluation folders, by relative path."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.relative_to(run).parts[0] != "eval"}


@pytest.mark.slow
def test_fit_ends_on_the_test_split_and_evaluations_never_touch_its_files(tmp_path, tree):
    run = tmp_path / "run"
    # log_every_n_steps (50 by default) is longer than an epoch (2 steps): the epoch's training
    # metrics must reach metrics.csv all the same.
    fitted = wrn("fit", *TINY, "--data.root", tree, "--trainer.max_epochs", 2,
                 "--trainer.default_root_dir", run)
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    record = read_metrics(run)
    assert record["status"] == "finished" and record["test_view"] == "single"
    assert 0.0 <= record["test_acc"] <= 1.0 and 0.0 <= record["test_acc_best"] <= 1.0
    assert [line["epoch"] for line in read_jsonl(run / "epochs.jsonl")[0]] == [0, 1]
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train_rows = [row for row in rows if row["train_loss"]]
    assert [row["epoch"] for row in train_rows] == ["0", "1"] and all(r["train_acc"] for r in train_rows)

    before = files_of(run)
    config, best = run / "config.yaml", run / "checkpoints" / "best.ckpt"
    for command in ("test", "validate", "predict"):  # the README's pattern
        result = wrn(command, "--config", config, "--ckpt_path", best, "--model.eval_view", "flip")
        assert result.returncode == 0, (command, result.stderr[-3000:])
        assert "will be deleted" not in result.stderr
    assert files_of(run) == before  # byte for byte
    for command, key in (("test", "test_acc"), ("validate", "val_acc")):
        [folder] = (run / "eval").glob(f"{command}-*")
        evaluation = json.loads((folder / "evaluation.json").read_text())
        assert evaluation["stage"] == command and evaluation["eval_view"] == "flip"
        assert 0.0 <= evaluation[key] <= 1.0 and evaluation["ckpt_path"] == str(best)
        assert (folder / "metrics.csv").exists() and (folder / "config.yaml").exists()
    assert len(list((run / "eval").glob("predict-*/config.yaml"))) == 1

    # The run's config.yaml is still one `wrn fit` accepts: resume the (finished) run from it.
    resumed = wrn("fit", "--config", config, "--ckpt_path", "last", "--test_after_fit", "false")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = read_metrics(run)
    assert record["epochs"] == 2 and record["status"] == "finished"
    assert record["test_acc"] is None and record["test_acc_best"] is None  # switched off


@pytest.mark.slow
def test_fused_run_records_the_test_split_per_copy(tmp_path, tree):
    run = tmp_path / "fused"
    result = wrn("fit", *TINY, "--data.root", tree, "--trainer.max_epochs", 1, "--model.copies", 2,
                 "--seed_everything", 5, "--trainer.default_root_dir", run, "--trainer.logger", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    copies = [read_metrics(run / f"seed-{seed}") for seed in (5, 6)]
    assert [c["seed"] for c in copies] == [5, 6]
    for key in ("test_acc", "test_acc_best"):
        values = [c[key] for c in copies]
        assert all(0.0 <= v <= 1.0 for v in values), copies
        assert read_metrics(run)[key] == pytest.approx(sum(values) / 2)


NO_TENSORBOARD = '''
import sys
sys.modules["tensorboard"] = None  # import tensorboard fails, as on a machine without it
sys.modules["tensorboardX"] = None
'''


@pytest.mark.slow
def test_saved_config_replays_from_another_folder_without_tensorboard(tmp_path, tree):
    first, extra = tmp_path / "machine-a" / "run", tmp_path / "extra-log"
    # A logger added next to the run's own CSV log (as W&B or MLflow would be).
    result = wrn("fit", *TINY, "--data.root", tree, "--trainer.max_epochs", 1,
                 "--trainer.default_root_dir", first, "--test_after_fit", "false",
                 "--trainer.logger+=CSVLogger", "--trainer.logger.save_dir", extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (first / "metrics.csv").exists() and list(extra.rglob("metrics.csv"))
    saved = yaml.safe_load((first / "config.yaml").read_text())
    # Only the added logger: the run's own logs are resolved again wherever it runs.
    [added] = saved["trainer"]["logger"]
    assert added["init_args"]["save_dir"] == str(extra)
    assert saved["weights_only"] is True and saved["model"]["name"] == "wrn-10-1"

    moved = tmp_path / "machine-b" / "run"
    moved.parent.mkdir()
    shutil.move(first.parent, moved.parent.parent / "gone")  # machine a's folder no longer exists
    shutil.copytree(moved.parent.parent / "gone" / "run", moved)
    shutil.rmtree(moved.parent.parent / "gone")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_TENSORBOARD)
    again = tmp_path / "machine-b" / "again"
    replay = wrn("fit", "--config", moved / "config.yaml", "--trainer.default_root_dir", again,
                 env=shim_env(shim))
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert "tensorboard is not installed" in replay.stderr
    assert read_metrics(again)["status"] == "finished" and (again / "metrics.csv").exists()
    assert not first.exists()


def test_print_config_shows_what_the_run_uses():
    result = wrn_here("fit", "--config", REPO / "configs/wrn-16-4.yaml", "--seed_everything", 7,
                      "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    root = "runs/wrn-16-4-seed7"
    assert config["trainer"]["default_root_dir"] == root and config["weights_only"] is True
    loggers = config["trainer"]["logger"]
    assert loggers[0]["class_path"] == "lightning.pytorch.loggers.CSVLogger"
    assert loggers[0]["init_args"]["save_dir"] == root and config["test_after_fit"] is True
    # This machine's choices, not nulls (the test machines have no GPU).
    assert (config["trainer"]["precision"], config["trainer"]["benchmark"]) == ("32-true", False)
    assert config["model"]["channels_last"] is False and config["data"]["loader"] == "dataloader"
    assert config["model"]["num_classes"] == 10 and config["model"]["seed"] == 7  # links applied
