"""What one real `wrn fit` leaves, checked in the fast tier (tests/conftest.py's `tiny_run`, run in
this process): its record against its own files, its test accuracies against `wrn test` on its
checkpoints, evaluations that never touch it, the network it gives back, predictions."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import wrn
from tests.helpers import wrn_here
from wrn import rundir
from wrn.files import read_jsonl


def evaluate(run, checkpoint: str, command: str = "test") -> dict:
    before = set((run / "eval").glob(f"{command}-*")) if (run / "eval").exists() else set()
    result = wrn_here(command, "--config", run / "config.yaml", "--ckpt_path",
                      run / "checkpoints" / checkpoint, "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    [folder] = set((run / "eval").glob(f"{command}-*")) - before
    return json.loads((folder / "evaluation.json").read_text())


def test_the_record_is_whole_and_agrees_with_the_epochs_log(tiny_run):
    _, run = tiny_run
    record = rundir.read_metrics(run)
    lines, problems = read_jsonl(run / "epochs.jsonl")
    assert record["status"] == "finished" and not problems
    assert [line["epoch"] for line in lines] == [0, 1] and record["epochs"] == 2
    assert record["final_val_acc"] == lines[-1]["val_acc"]
    assert record["best_val_acc"] == max(line["val_acc"] for line in lines)
    assert record["global_step"] == lines[-1]["step"] == 2 * 4  # 36 trained images, batch 8
    assert record["train_images"] == 2 * 32 and record["images_per_sec"] > 0
    assert record["settings"]["model.dropout"] == 0.3 and record["macs"] > 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.ckpt", "last.ckpt", "previous-last.ckpt"]


def test_the_test_accuracies_are_those_wrn_test_gives_on_the_last_and_best_checkpoints(tiny_run):
    _, run = tiny_run
    record = rundir.read_metrics(run)
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "eval" not in p.parts}
    assert evaluate(run, "last.ckpt")["test_acc"] == pytest.approx(record["test_acc"], abs=1e-6)
    assert evaluate(run, "best.ckpt")["test_acc"] == pytest.approx(record["test_acc_best"], abs=1e-6)
    assert {p: p.read_bytes() for p in files} == files  # evaluations never touch the run's files


def test_load_model_gives_back_the_trained_network(tiny_run):
    _, run = tiny_run
    net = wrn.load_model(run)
    assert not net.training and net.config.dropout == 0.3
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    weights = {k[len("net."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    assert all(torch.equal(net.state_dict()[k], v) for k, v in weights.items())


def test_predict_writes_a_row_per_test_image(tiny_run, tmp_path):
    _, run = tiny_run
    out = tmp_path / "predictions.csv"
    result = wrn_here("predict", "--config", run / "config.yaml", "--ckpt_path",
                      run / "checkpoints" / "best.ckpt", "--predictions.out", out,
                      "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [row["image"] for row in rows] == [str(i) for i in range(12)]
    assert rows[0]["predicted"] in ("class0", "class1", "class2")


def test_the_fit_summary_names_the_record_and_the_checkpoints(tiny_run):
    _, run = tiny_run
    result = wrn_here("fit", "--config", run / "config.yaml", "--ckpt_path", "last",
                      "--test_after_fit", "false")  # nothing left to train: the summary only
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrn-10-1 finished: 2 epochs in" in result.stdout
    assert f"record:       {run / 'metrics.json'}" in result.stdout
