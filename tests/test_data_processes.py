"""The CPU DataLoader among processes: SIGTERM sent to a fit's whole process group (`timeout`,
`scancel`, a terminal) with worker processes, and DDP processes each training on their own shard.
Real `wrn fit` processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers import make_image_tree, wait_for, warm
from tests.test_faults import epochs_of, fit, fit_args
from tests.test_fit_trust import HOLD_AT, shim
from wrn import rundir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """CIFAR-10's 10 classes x 8 images: 48 trained, 32 held out (tests.test_faults.TINY_FIT)."""
    return make_image_tree(tmp_path_factory.mktemp("tree"), classes=10, per_class=8)


def group_is_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("workers", [0, 1])
def test_sigterm_to_the_process_group_interrupts_the_fit_resumably(tmp_path, tree, workers):
    run, marker = tmp_path / "run", tmp_path / f"held-{uuid.uuid4().hex[:6]}"
    settings = ["--trainer.max_epochs", 3, "--data.loader", "dataloader", "--data.num_workers", workers]
    hold = HOLD_AT.format(hook="on_train_batch_start", condition="self.current_epoch >= 1",
                          marker=str(marker))
    process = warm().start(fit_args(tree, run, *settings), env=shim(tmp_path, hold), stderr=subprocess.PIPE,
                           start_new_session=True)  # a group of its own, as under `timeout`
    try:
        wait_for(marker.exists, "the run to hold in its second training epoch", process)
        os.killpg(process.pid, signal.SIGTERM)  # the main process and its DataLoader workers alike
        _, stderr = process.communicate(timeout=120)
        wait_for(lambda: group_is_gone(process.pid), "the workers to stop", timeout=30)
    finally:
        if not group_is_gone(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 143, stderr[-3000:]
    said = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("Seed set", "warning:"))]
    assert len(said) == 1 and "SIGTERM" in said[0], stderr[-3000:]  # no worker's death, no traceback
    record = rundir.read_metrics(run)
    assert record["status"] == "interrupted" and "interrupted by SIGTERM" in record["error"], record

    resumed = fit(tree, run, *settings, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rundir.read_metrics(run)["status"] == "finished"
    assert [line["epoch"] for line in epochs_of(run)] == [0, 1, 2]


@pytest.mark.parametrize("distributed_sampler", ["true", "false"])
def test_ddp_processes_train_on_shards_of_the_cpu_dataloader(tmp_path, tree, distributed_sampler):
    # Lightning wraps a plain sampler in a DistributedSampler of its own (use_distributed_sampler
    # true) or leaves every process the whole epoch (false); the loader's sampler is rank-aware either way.
    settings = ["--trainer.max_epochs", 2, "--data.loader", "dataloader", "--data.batch_size", 8,
                "--test_after_fit", "false", "--trainer.use_distributed_sampler", distributed_sampler]
    single = fit(tree, tmp_path / "single", *settings)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = fit(tree, tmp_path / "ddp", *settings, "--trainer.strategy", "ddp", "--trainer.devices", 2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = rundir.read_metrics(tmp_path / "single"), rundir.read_metrics(tmp_path / "ddp")
    assert one["train_images"] == two["train_images"] == 48 * 2, two  # each image once an epoch
    assert (one["global_step"], two["global_step"]) == (12, 6), two  # 6 steps of 8 an epoch, 3 on each of 2
