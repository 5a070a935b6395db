"""`wrn fit` under faults: a full disk while checkpointing (an injected ENOSPC in the real
process), an unreadable last.ckpt at resume, SIGTERM and Ctrl-C, bad --ckpt_path and run folders."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import checkpoint_epoch, make_image_tree, wait_for, warm
from tests.test_faults import assert_one_line_error, epochs_of, fit, fit_args, fit_here, shim_env
from wrn.rundir import read_metrics


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """4 classes x 20 images: 48 training images, 3 steps of 16 per epoch."""
    return make_image_tree(tmp_path_factory.mktemp("tree"), classes=4, per_class=20)


def shim(tmp_path: Path, code: str) -> dict[str, str]:
    """An environment whose Python runs `code` at start-up (sitecustomize), in the real process."""
    folder = tmp_path / "shim"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(code)
    return shim_env(folder)


DISK_FULL_FROM_EPOCH_1 = '''
import errno, os
import torch

_save = torch.save


def save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("epoch", 0) >= 1:  # the disk fills up during epoch 1
        f.write(b"PK\\x03\\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _save(obj, f, *args, **kwargs)


torch.save = save
'''


@pytest.mark.slow
def test_full_disk_while_checkpointing_fails_the_run_in_one_line_and_keeps_whole_files(tmp_path, tree):
    run = tmp_path / "run"
    checkpoints = run / "checkpoints"
    result = fit(tree, run, "--trainer.max_epochs", 3, env=shim(tmp_path, DISK_FULL_FROM_EPOCH_1))
    line = assert_one_line_error(result, f"no space left on device: {checkpoints.resolve()}")
    assert result.returncode != 0, line
    record = read_metrics(run)
    assert record["status"] == "failed" and "no space left on" in record["error"], record
    assert "(epoch 1," in record["error"]
    # Epoch 0's checkpoints are whole; nothing half-written and no temporary file is left.
    assert checkpoint_epoch(checkpoints / "last.ckpt") == 0
    assert checkpoint_epoch(checkpoints / "best.ckpt") == 0
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]

    resumed = fit(tree, run, "--trainer.max_epochs", 3, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert read_metrics(run)["status"] == "finished"
    assert [line["epoch"] for line in epochs_of(run)] == [0, 1, 2]


@pytest.mark.slow
def test_unreadable_last_checkpoint_falls_back_to_the_previous_then_starts_over(tmp_path, tree):
    run = tmp_path / "run"
    checkpoints = run / "checkpoints"
    assert fit(tree, run, "--trainer.max_epochs", 3).returncode == 0
    assert checkpoint_epoch(checkpoints / "previous-last.ckpt") == 1
    last = checkpoints / "last.ckpt"
    last.write_bytes(last.read_bytes()[:3000])  # cut short, as a dying disk might leave it

    resumed = fit(tree, run, "--trainer.max_epochs", 3, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{last} is unreadable" in resumed.stderr and "resuming from previous-last.ckpt" in resumed.stderr
    assert (checkpoints / "damaged-last.ckpt").exists()  # kept, not overwritten
    assert read_metrics(run)["status"] == "finished" and checkpoint_epoch(last) == 2
    assert [line["epoch"] for line in epochs_of(run)] == [0, 1, 2]  # epoch 2 redone, once

    for path in (last, checkpoints / "previous-last.ckpt"):
        path.write_bytes(b"")
    restarted = fit(tree, run, "--trainer.max_epochs", 3, "--ckpt_path", checkpoints / "last.ckpt")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "starting over" in restarted.stderr
    assert read_metrics(run)["epochs"] == 3 and checkpoint_epoch(last) == 2
    assert [line["epoch"] for line in epochs_of(run)] == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("make,needles", [
    (lambda tmp: tmp, ["is a directory"]),
    (lambda tmp: (tmp / "empty.ckpt").write_bytes(b"") or tmp / "empty.ckpt", ["checkpoint is empty or truncated"]),
], ids=["folder", "empty-file"])
def test_ckpt_path_that_is_no_checkpoint_is_one_line(tmp_path, tree, make, needles):
    path = make(tmp_path)
    assert_one_line_error(fit_here(tree, tmp_path / "run", "--ckpt_path", path), str(path), *needles)


def test_run_folder_that_is_a_file_is_one_line(tmp_path, tree):
    file = tmp_path / "taken"
    file.write_text("not a folder")
    assert_one_line_error(fit_here(tree, file), f"trainer.default_root_dir {file} is a file")


HOLD_UNTIL_SIGNALLED = '''
import time
import wrn.module

_start = wrn.module.LitClassifier.on_train_epoch_start


def on_train_epoch_start(self):
    _start(self)
    if self.current_epoch >= 1:
        open({marker!r}, "w").close()
        while not self.trainer.received_sigterm:  # Ctrl-C raises KeyboardInterrupt in here
            time.sleep(0.05)


wrn.module.LitClassifier.on_train_epoch_start = on_train_epoch_start
'''


@pytest.mark.slow
@pytest.mark.parametrize("signum,code,named", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_signalled_fit_exits_128_plus_the_signal_and_records_it(tmp_path, tree, signum, code, named):
    run, held = tmp_path / "run", tmp_path / "held"
    env = shim(tmp_path, HOLD_UNTIL_SIGNALLED.format(marker=str(held)))
    process = warm().start(fit_args(tree, run, "--trainer.max_epochs", 5), env=env, stderr=subprocess.PIPE)
    try:
        wait_for(held.exists, "the run to reach epoch 1", process)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == code, stderr[-3000:]
    said = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("Seed set", "warning:"))]
    assert len(said) == 1 and said[0].startswith("error: interrupted") and "--ckpt_path last" in said[0], said
    record = read_metrics(run)
    assert record["status"] == "interrupted" and f"interrupted by {named}" in record["error"], record
    assert checkpoint_epoch(run / "checkpoints" / "last.ckpt") == 0
