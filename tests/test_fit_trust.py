"""Records that never describe a run that did not happen: a run folder is never reused for other
settings, a diverged run is failed and checkpoints nothing non-finite, a run is finished only once
its record is whole, one folder has one writer, a full disk is named, DDP counts every process's
images. Real `wrn` processes, real signals, real file systems."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from tests.helpers import make_image_tree, wait_for, warm
from tests.test_faults import REPO, assert_one_line_error, epochs_of, fit, fit_args, shim_env
from wrn import rundir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """4 classes x 20 training images (48 trained, 32 held out: tests.test_faults.TINY_FIT) and 4
    test images each."""
    return make_image_tree(tmp_path_factory.mktemp("tree"), classes=4, per_class=20, test_per_class=4)


def shim(tmp_path: Path, code: str) -> dict[str, str]:
    folder = tmp_path / f"shim-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(code)
    return shim_env(folder)


def files_of(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


HOLD_AT = '''
import time
import wrn.module

_hook = getattr(wrn.module.LitClassifier, {hook!r})


def held(self, *args):
    _hook(self, *args)
    if {condition}:
        open({marker!r}, "w").close()
        while not self.trainer.received_sigterm:
            time.sleep(0.05)


setattr(wrn.module.LitClassifier, {hook!r}, held)
'''


def start_held(tmp_path: Path, tree: Path, run: Path, hook: str, condition: str, *extra):
    marker = tmp_path / f"held-{uuid.uuid4().hex[:6]}"
    env = shim(tmp_path, HOLD_AT.format(hook=hook, condition=condition, marker=str(marker)))
    process = warm().start(fit_args(tree, run, *extra), env=env, stderr=subprocess.PIPE)
    try:
        wait_for(marker.exists, f"the run to hold in {hook}", process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def sigterm(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # never left behind, whatever happened
        process.wait()
    return process.returncode, stderr


def test_a_finished_run_folder_is_never_reused_for_other_settings(tmp_path, tree):
    run = tmp_path / "run"
    assert fit(tree, run, "--trainer.max_epochs", 1).returncode == 0
    before = files_of(run)
    replay = warm().run(["fit", "--config", run / "config.yaml", "--model.optim.lr", "0.05"],
                        env=shim_env(tmp_path))
    assert_one_line_error(replay, str(run), "model.optim.lr: 0.1 -> 0.05", "never reused")
    assert files_of(run) == before  # nothing rewritten
    # The same settings again: a fresh run into the same folder replaces it, checkpoints included
    # (never best-v1.ckpt beside a stale best.ckpt).
    again = fit(tree, run, "--trainer.max_epochs", 1)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.ckpt", "last.ckpt", "previous-last.ckpt"]
    assert rundir.read_metrics(run)["settings"]["model.optim.lr"] == 0.1


def test_a_resume_with_other_settings_is_refused_and_the_same_one_finishes(tmp_path, tree):
    run = tmp_path / "run"
    process = start_held(tmp_path, tree, run, "on_train_epoch_start", "self.current_epoch >= 1",
                         "--trainer.max_epochs", 3)
    code, stderr = sigterm(process)
    assert code == 143, stderr[-3000:]
    record = rundir.read_metrics(run)
    assert record["status"] == "interrupted" and rundir.run_state(run).state == rundir.INTERRUPTED
    for changed, difference in ((["--trainer.max_epochs", 4], "trainer.max_epochs: 3 -> 4"),
                                (["--model.optim.lr", 0.5], "model.optim.lr: 0.1 -> 0.5")):
        refused = fit(tree, run, "--trainer.max_epochs", 3, *changed, "--ckpt_path", "last")
        assert_one_line_error(refused, str(run), difference)
    resumed = fit(tree, run, "--trainer.max_epochs", 3, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rundir.read_metrics(run)["status"] == "finished"
    assert [line["epoch"] for line in epochs_of(run)] == [0, 1, 2]


POISON_LAST_STEP = '''
import wrn.module

_end = wrn.module.LitClassifier.on_train_batch_end


def on_train_batch_end(self, outputs, batch, batch_idx):
    last = batch_idx + 1 >= self.trainer.num_training_batches
    if last and self.current_epoch == self.trainer.max_epochs - 1:  # the last step of the run
        next(self.net.parameters()).data.view(-1)[0] = float("nan")
    _end(self, outputs, batch, batch_idx)


wrn.module.LitClassifier.on_train_batch_end = on_train_batch_end
'''


def test_divergence_in_the_last_epoch_fails_the_run_and_checkpoints_nothing_non_finite(tmp_path, tree):
    run = tmp_path / "run"
    result = fit(tree, run, "--trainer.max_epochs", 2, env=shim(tmp_path, POISON_LAST_STEP))
    assert_one_line_error(result, "weights became NaN/inf at epoch 1")
    record = rundir.read_metrics(run)
    assert record["status"] == "failed" and "weights became NaN/inf" in record["error"], record
    for name in ("last.ckpt", "best.ckpt"):
        checkpoint = torch.load(run / "checkpoints" / name, weights_only=True)
        assert checkpoint["epoch"] == 0
        assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values()
                   if t.is_floating_point())


def test_no_checkpoint_with_non_finite_weights_is_written(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(FloatingPointError, match="refusing to write the checkpoint"):
        rundir.save_checkpoint({"state_dict": {"net.w": torch.tensor([1.0, float("inf")])}}, path)
    assert not path.parent.exists() or not any(path.parent.iterdir())


def test_sigterm_during_the_final_test_leaves_the_run_unfinished_and_resumable(tmp_path, tree):
    run = tmp_path / "run"
    process = start_held(tmp_path, tree, run, "on_test_epoch_start", "True", "--trainer.max_epochs", 1)
    code, stderr = sigterm(process)
    assert code == 143, stderr[-3000:]
    record = rundir.read_metrics(run)
    assert record["status"] == "interrupted" and "interrupted by SIGTERM" in record["error"]
    assert record["test_acc_best"] is None
    assert rundir.run_state(run).state == rundir.INTERRUPTED
    resumed = fit(tree, run, "--trainer.max_epochs", 1, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = rundir.read_metrics(run)
    assert record["status"] == "finished" and record["test_acc"] is not None
    assert record["test_acc_best"] is not None


def test_a_second_fit_into_a_folder_in_use_is_refused_at_once(tmp_path, tree):
    run = tmp_path / "run"
    first = start_held(tmp_path, tree, run, "on_train_epoch_start", "True", "--trainer.max_epochs", 2)
    try:
        before = files_of(run)
        second = fit(tree, run, "--trainer.max_epochs", 2)
        assert_one_line_error(second, f"{run} is in use")
        assert files_of(run) == before
    finally:
        code, stderr = sigterm(first)
    assert code == 143, stderr[-3000:]
    assert rundir.read_metrics(run)["status"] == "interrupted"


def test_a_deleted_record_is_rebuilt_from_the_runs_own_files(tmp_path, tree):
    run = tmp_path / "run"
    assert fit(tree, run, "--trainer.max_epochs", 2, "--test_after_fit", "false").returncode == 0
    whole = rundir.read_metrics(run)
    (run / "metrics.json").unlink()
    resumed = fit(tree, run, "--trainer.max_epochs", 2, "--test_after_fit", "false", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rebuilt = rundir.read_metrics(run)
    assert rebuilt["final_val_acc"] == epochs_of(run)[-1]["val_acc"] == whole["final_val_acc"]
    assert rebuilt["best_val_acc"] == whole["best_val_acc"] and rebuilt["status"] == "finished"


@contextlib.contextmanager
def small_file_system(folder: Path, size: str):
    """A tmpfs of `size` at `folder` (needs the right to mount), else None."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], capture_output=True)


FILE_SIZE_LIMIT = '''
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
'''


def test_a_real_full_disk_while_checkpointing_is_one_line_naming_the_checkpoint(tmp_path, tree):
    # A file system too small for the second 0.65 MB checkpoint of epoch 0: the real ENOSPC a full
    # disk gives (torch's own writer would report it as "[enforce fail at inline_container.cc]").
    # Where mounting is not allowed, a file-size limit gives the kernel's EFBIG the same way.
    with small_file_system(tmp_path / "disk", "1m") as mounted:
        run = tmp_path / "disk" / "run"
        env = None if mounted else shim(tmp_path, FILE_SIZE_LIMIT.format(limit=400_000))
        result = fit(tree, run, "--trainer.max_epochs", 2, env=env)
        reason = "no space left on device" if mounted else "file too large"
        line = assert_one_line_error(result, f"{reason}: {(run / 'checkpoints').resolve()}")
        assert "enforce fail" not in result.stderr, line
        record = rundir.read_metrics(run)
        assert record["status"] == "failed" and reason in record["error"], record
        assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_ddp_throughput_counts_the_images_of_every_process(tmp_path, tree):
    run = tmp_path / "run"
    result = fit(tree, run, "--trainer.max_epochs", 1, "--trainer.strategy", "ddp",
                 "--trainer.devices", 2, "--data.batch_size", 8, "--data.loader", "gpu",
                 "--test_after_fit", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    record = rundir.read_metrics(run)
    # 80 images, 32 held out: 48 trained, 24 per process, 3 steps of 8 on each of the 2.
    assert record["train_images"] == 48 and record["global_step"] == 3, record


def test_output_into_a_closed_pipe_is_silence():
    process = subprocess.Popen([sys.executable, "-m", "wrn", "count", "wrn-10-1", "wrn-16-1"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # `| head -0`: the reader is gone before anything is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141 and stderr == "", stderr


def test_the_saved_record_names_its_settings(tmp_path, tree):
    run = tmp_path / "run"
    assert fit(tree, run, "--trainer.max_epochs", 1, "--test_after_fit", "false").returncode == 0
    settings = rundir.read_metrics(run)["settings"]
    assert settings["trainer.max_epochs"] == 1 and settings["model.name"] == "wrn-10-1"
    assert "data.root" not in settings and "trainer.default_root_dir" not in settings
    assert json.loads(json.dumps(settings)) == settings
    assert os.environ.get(rundir.LOCK_FD_ENV) is None


def test_a_relative_data_root_keeps_meaning_the_same_folder_when_replayed(tmp_path, tree):
    run = tmp_path / "run"
    relative = os.path.relpath(tree, REPO)
    assert fit(relative, run, "--trainer.max_epochs", 1, "--test_after_fit", "false").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    replay = subprocess.run([sys.executable, "-m", "wrn", "fit", "--config", str(run / "config.yaml"),
                             "--trainer.default_root_dir", str(tmp_path / "again")], cwd=elsewhere,
                            capture_output=True, text=True, timeout=600, env=shim_env(tmp_path))
    assert replay.returncode == 0, replay.stderr[-3000:]
    assert rundir.read_metrics(tmp_path / "again")["status"] == "finished"
    assert not (elsewhere / relative).exists()  # nothing "downloaded" beside the new folder


def test_a_run_folder_on_a_read_only_file_system_is_one_line_naming_it(tmp_path, tree):
    disk = tmp_path / "ro"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a read-only file system is not allowed here")
    try:
        result = fit(tree, disk / "run", "--trainer.max_epochs", 1)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
    assert_one_line_error(result, f"read-only file system: {disk / 'run'}")
