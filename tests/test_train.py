"""Training through the `wrn` CLI, as a user runs it: real processes, real images, real records."""

import json
import os
import signal
import subprocess

import pytest
import yaml

from tests.helpers import REPO, make_image_tree, wait_for, warm, wrn_data_root, wrn_here
from wrn.module import lr_factor
from wrn.files import read_jsonl
from wrn.rundir import read_metrics

TINY = ["--model.name", "wrn-10-1", "--data.batch_size", "32", "--data.num_workers", "0",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1"]


def wrn(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    """`wrn ARGS` in a process of its own (forked warm: tests.helpers.warm)."""
    return warm().run(args, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=900)


@pytest.mark.slow
def test_real_cifar_training_beats_chance_by_far(tmp_path):
    root = wrn_data_root()
    run = tmp_path / "run"
    # 1,200 training images of the real data, 4 epochs: seconds on a CPU, far above 10% chance
    # on the held-out images and on the whole 10,000-image test split.
    result = wrn("fit", "--config", "configs/quick.yaml", "--data.root", str(root),
                 "--data.subset", "150", "--data.val_size", "300", "--model.name", "wrn-10-1",
                 "--data.batch_size", "64", "--trainer.max_epochs", "4",
                 "--trainer.default_root_dir", str(run), "--trainer.enable_progress_bar", "false",
                 "--data.num_workers", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    record = read_metrics(run)
    assert record["status"] == "finished" and record["epochs"] == 4
    assert record["best_val_acc"] >= 0.25 and record["test_acc"] >= 0.25, record
    assert record["model"] == "wrn-10-1" and record["params"] > 0 and record["macs"] > 0
    assert record["images_per_sec"] > 0 and record["wall_seconds"] > 0 and record["seed"] == 0
    lines, problems = read_jsonl(run / "epochs.jsonl")
    assert [line["epoch"] for line in lines] == [0, 1, 2, 3] and not problems
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["name"] == "wrn-10-1" and saved["data"]["subset"] == 150
    assert (run / "checkpoints" / "last.ckpt").exists() and (run / "checkpoints" / "best.ckpt").exists()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_image_tree(tmp_path_factory.mktemp("data"), classes=4, per_class=24, test_per_class=8)


@pytest.mark.slow
def test_resume_continues_the_global_step_and_test_evaluates_the_test_split(tmp_path, tree):
    from tests.test_fit_faults import HOLD_UNTIL_SIGNALLED, shim

    run = tmp_path / "run"
    common = [*TINY, "--data.root", str(tree), "--data.val_size", "16",
              "--trainer.default_root_dir", str(run), "--trainer.max_epochs", "2"]
    held = tmp_path / "held"
    first = warm().start(["fit", *common], env=shim(tmp_path, HOLD_UNTIL_SIGNALLED.format(marker=str(held))),
                         stderr=subprocess.PIPE)
    wait_for(held.exists, "the run to hold at epoch 1", first)
    first.send_signal(signal.SIGTERM)  # a scheduler's stop after the first epoch
    assert first.wait(timeout=120) == 143, first.stderr.read()[-3000:]
    [epoch_0] = read_jsonl(run / "epochs.jsonl")[0]
    steps_per_epoch = epoch_0["step"]
    assert steps_per_epoch == 2  # 80 training images / batch 32, the partial batch dropped
    second = wrn("fit", *common, "--ckpt_path", "last")
    assert second.returncode == 0, second.stderr[-3000:]
    record = read_metrics(run)
    assert record["global_step"] == 2 * steps_per_epoch and record["epochs"] == 2
    assert [line["epoch"] for line in read_jsonl(run / "epochs.jsonl")[0]] == [0, 1]

    # The fit ended on the test split; `wrn test` writes a record of its own, not the run's.
    assert 0.0 <= record["test_acc"] <= 1.0 and record["test_view"] == "single"
    tested = wrn("test", *common, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
                 "--model.eval_view", "multi-crop")
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert read_metrics(run) == record
    [evaluation] = (run / "eval").glob("test-*/evaluation.json")
    evaluated = json.loads(evaluation.read_text())
    assert 0.0 <= evaluated["test_acc"] <= 1.0 and evaluated["eval_view"] == "multi-crop"
    assert record["status"] == "finished" and record["global_step"] == 2 * steps_per_epoch


def test_print_config_shows_the_linked_recipe():
    result = wrn_here("fit", "--config", REPO / "configs/wrn-28-10.yaml", "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    assert config["model"]["name"] == "wrn-28-10" and config["trainer"]["max_epochs"] == 200
    assert config["model"]["optim"] == {**config["model"]["optim"], "lr": 0.1, "nesterov": True,
                                        "weight_decay": 0.0005, "schedule": "wrn"}


@pytest.mark.parametrize("args,message", [
    (["--model.name", "wrm-28-10"], "unknown model 'wrm-28-10'"),
    (["--model.depth", "27"], "depth=27 is invalid for WRN block B(3,3)"),
    (["--model.dropout", "1.5"], "dropout=1.5 is invalid"),
    (["--data.root", "/nonexistent/cifar", "--data.download", "false"], "/nonexistent/cifar"),
    (["--model.colour", "red"], "unrecognized arguments: --model.colour red"),
    (["--model.depth", "deep"], 'Parser key "model.depth"'),
])
def test_bad_configs_fail_with_one_line(args, message, tmp_path):
    result = wrn_here("fit", "--config", REPO / "configs/quick.yaml", "--trainer.default_root_dir",
                      str(tmp_path / "run"), *args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_schedules_follow_the_papers():
    # WRN: x0.2 at epochs 60, 120, 160 of 200.
    assert [lr_factor(e / 200, "wrn") for e in (0, 59, 60, 120, 160, 199)] == pytest.approx(
        [1, 1, 0.2, 0.04, 0.008, 0.008])
    # ResNet: /10 at 50% and 75% (32k and 48k of 64k iterations).
    assert [lr_factor(p, "resnet") for p in (0.49, 0.5, 0.75)] == pytest.approx([1, 0.1, 0.01])
    assert lr_factor(0.5, "cosine") == pytest.approx(0.5) and lr_factor(1.0, "cosine") == pytest.approx(0)
    assert lr_factor(0.15, "onecycle") == pytest.approx(1) and lr_factor(1.0, "onecycle") == 0


@pytest.mark.slow
def test_fused_run_reports_each_seed_as_its_separate_run_would(tmp_path, tree):
    # The device loader (here on the CPU) draws order and crops per copy from seed + i, and each
    # copy is initialised from seed + i, so copy i must retrace the separate run with that seed.
    common = [*TINY, "--data.root", str(tree), "--data.val_size", "16", "--trainer.max_epochs", "2",
              "--data.loader", "gpu", "--trainer.deterministic", "true"]
    for seed in (0, 1):
        result = wrn("fit", *common, "--seed_everything", str(seed),
                     "--trainer.default_root_dir", str(tmp_path / f"seed{seed}"))
        assert result.returncode == 0, result.stderr[-3000:]
    fused = wrn("fit", *common, "--seed_everything", "0", "--model.copies", "2",
                "--trainer.default_root_dir", str(tmp_path / "fused"))
    assert fused.returncode == 0, fused.stderr[-3000:]
    summary = read_metrics(tmp_path / "fused")
    assert summary["copies"] == 2 and summary["copy_dirs"] == ["seed-0", "seed-1"]
    for seed in (0, 1):
        separate, _ = read_jsonl(tmp_path / f"seed{seed}" / "epochs.jsonl")
        copy, _ = read_jsonl(tmp_path / "fused" / f"seed-{seed}" / "epochs.jsonl")
        for key in ("train_loss", "val_loss", "val_acc"):
            assert [e[key] for e in copy] == pytest.approx([e[key] for e in separate], rel=1e-4), key
        record = read_metrics(tmp_path / "fused" / f"seed-{seed}")
        assert record["seed"] == seed and record["status"] == "finished"
        assert record["best_val_acc"] == pytest.approx(read_metrics(tmp_path / f"seed{seed}")["best_val_acc"])


@pytest.fixture(scope="module")
def checker():
    from wrn.train import FitConfigChecker

    return FitConfigChecker()


@pytest.mark.parametrize("config", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_shipped_recipe_parses(config, checker):
    parsed = checker.check(["--config", str(REPO / "configs" / config)])
    assert parsed.model.name and parsed.trainer.max_epochs > 0


def test_the_private_lightning_methods_wrn_overrides_still_exist():
    # wrn.train.WRNCLI overrides these two: predict's writer arguments, and refusing a checkpoint
    # of another model instead of silently replacing the configured one. A Lightning that
    # renamed or stopped calling them would turn both off without an error.
    import inspect

    from lightning.pytorch.cli import LightningCLI

    parameters = inspect.signature(LightningCLI._prepare_subcommand_parser).parameters
    assert list(parameters) == ["self", "klass", "subcommand", "kwargs"]
    assert "self._prepare_subcommand_parser(" in inspect.getsource(LightningCLI._add_subcommands)
    assert "self._parse_ckpt_path()" in inspect.getsource(LightningCLI.__init__)
