"""A small real fit, test and predict as a user sees them: no third-party noise, epochs counted
from 1, a closing summary, predictions written to a CSV; the warning before a CPU run of days."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, make_image_tree, warm, wrn_data_root
from tests.test_data_degenerate import save_16_bit_grey, write_png_header
from tests.test_faults import assert_one_line_error
from wrn.console import _one_based, planned_train_images, slow_cpu_warning
from wrn.data import CIFARData
from wrn.module import LitClassifier

NOISE = ("litlogger", "LeafSpec", "torch.jit.script", "Total FLOPs: 0", "Epoch 1/1", "GPU available",
         "TPU available", "Loading `train_dataloader`", "v_num", "log_every_n_steps",
         "Restoring states", "Test metric")
SMALL = ["--model.name", "wrn-10-1", "--data.batch_size", "16", "--data.val_size", "15",
         "--data.num_workers", "0", "--data.download", "false", "--trainer.accelerator", "cpu"]


def wrn(*args, cold: bool = False) -> subprocess.CompletedProcess:
    """`wrn ARGS` in a process of its own: forked warm (tests.helpers.warm), or `cold`, started as
    a user starts it, so that what its imports print is seen too."""
    env = {k: v for k, v in os.environ.items() if k != "WRN_DEBUG"}
    if not cold:
        return warm().run(args, env=env)
    return subprocess.run([sys.executable, "-m", "wrn", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Two epochs of WRN-10-1 on 3 classes x 25 images (5 test images each), progress bar and
    model summary on, as a user runs it."""
    root = tmp_path_factory.mktemp("console")
    tree = make_image_tree(root / "data", classes=3, per_class=25, test_per_class=5)
    run = root / "run"
    result = wrn("fit", *SMALL, "--data.root", tree, "--trainer.max_epochs", "2",
                 "--trainer.default_root_dir", run, cold=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return tree, run, result


@pytest.mark.slow
def test_a_fit_prints_no_known_noise_and_counts_epochs_from_one(fitted):
    _, _, result = fitted
    output = result.stdout + result.stderr
    for noise in NOISE:
        assert noise not in output, f"{noise!r} printed:\n{output[-3000:]}"
    assert "Epoch 2/2" in output
    assert "Total FLOPs: 25" in output  # wrn-10-1: 12.65 M multiply-adds = 25.3 M FLOPs per image


def test_epochs_are_counted_from_one_in_either_bar():
    assert _one_based(0, 2) == "Epoch 1/2" and _one_based(1, 2) == "Epoch 2/2"
    assert _one_based(4, -1) == "Epoch 5"  # max_epochs -1: no end


@pytest.mark.slow
def test_a_fit_ends_with_its_summary(fitted):
    _, run, result = fitted
    summary = result.stdout[result.stdout.index("wrn-10-1 finished"):]
    assert "2 epochs in" in summary and "training images/s" in summary
    assert "validation accuracy: best" in summary and "final" in summary
    assert f"record:       {run / 'metrics.json'}" in summary
    assert f"checkpoints:  {run / 'checkpoints'}" in summary
    assert "logs:         CSVLogger" in summary


@pytest.mark.slow
def test_a_test_ends_with_its_summary(fitted, tmp_path):
    tree, run, _ = fitted
    result = wrn("test", *SMALL, "--data.root", tree, "--trainer.default_root_dir", tmp_path / "test",
                 "--ckpt_path", run / "checkpoints" / "best.ckpt", "--trainer.logger", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout and "of 15 images in" in result.stdout, result.stdout
    assert "Test metric" not in result.stdout  # Lightning's table of unrounded numbers
    assert f"checkpoint:   {run / 'checkpoints' / 'best.ckpt'}" in result.stdout


def predict(fitted, tmp_path: Path, *args) -> subprocess.CompletedProcess:
    """`wrn predict` with the fitted run's best checkpoint, its own record under tmp_path/p."""
    tree, run, _ = fitted
    return wrn("predict", *SMALL, "--data.root", tree, "--trainer.default_root_dir", tmp_path / "p",
               "--trainer.logger", "false", "--ckpt_path", run / "checkpoints" / "best.ckpt", *args)


@pytest.mark.slow
def test_predict_writes_a_folder_of_any_size_images_to_a_csv(fitted, tmp_path):
    photos = tmp_path / "photos"
    (photos / "holiday").mkdir(parents=True)
    Image.fromarray(np.full((48, 80, 3), 90, np.uint8)).save(photos / "wide.png")
    Image.fromarray(np.full((300, 200, 3), 200, np.uint8)).save(photos / "holiday" / "tall.jpg")
    Image.fromarray(np.full((32, 32), 10, np.uint8)).save(photos / "grey.png")
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "predictions.csv"
    result = predict(fitted, tmp_path, "--predictions.images", photos, "--predictions.out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"predictions: {out}" in result.stdout
    rows = list(csv.DictReader(out.open()))
    assert [r["image"] for r in rows] == ["grey.png", "holiday/tall.jpg", "wide.png"]
    classes = ["class0", "class1", "class2"] + [f"class{i}" for i in range(3, 10)]
    assert list(rows[0]) == ["image", "predicted", *(f"p_{c}" for c in classes)]
    for row in rows:
        probs = [float(row[f"p_{c}"]) for c in classes]
        assert abs(sum(probs) - 1) < 1e-4
        assert row["predicted"] == classes[int(np.argmax(probs))]


@pytest.mark.slow
def test_predict_writes_the_test_split_by_index(fitted, tmp_path):
    out = tmp_path / "test.csv"
    result = predict(fitted, tmp_path, "--predictions.out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [r["image"] for r in rows] == [str(i) for i in range(15)]


@pytest.mark.slow
def test_predict_names_a_folder_without_images(fitted, tmp_path):
    result = predict(fitted, tmp_path, "--predictions.images", tmp_path)
    assert result.returncode == 2
    assert f"--predictions.images {tmp_path}: no .jpg" in result.stderr


@pytest.mark.slow
def test_predict_scales_16_bit_grey_escapes_non_utf8_names_and_counts_skipped_files(fitted, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(photos / "grey8.png")
    save_16_bit_grey(photos / "grey16.png", 100)  # the same grey in 16 bits
    with open(os.fsencode(photos) + b"/caf\xe9.png", "wb") as latin1:  # not a UTF-8 name
        latin1.write((photos / "grey8.png").read_bytes())
    (photos / "notes.txt").write_text("not an image")
    os.mkfifo(photos / "pipe.jpg")  # never opened: it would block
    out = tmp_path / "predictions.csv"
    result = predict(fitted, tmp_path, "--predictions.images", photos, "--predictions.out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row.pop("image"): row for row in csv.DictReader(out.open())}
    assert sorted(rows) == ["caf\\xe9.png", "grey16.png", "grey8.png"]
    assert rows["grey16.png"] == rows["grey8.png"] == rows["caf\\xe9.png"]  # scaled, not clipped to white
    assert f"warning: {photos}/caf\\xe9.png: the file name is not UTF-8" in result.stderr
    assert f"3 images predicted; 2 other files in {photos} skipped" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["decompression bomb", "output folder"])
def test_predict_names_a_decompression_bomb_and_an_output_folder_in_one_line(fitted, tmp_path, fault):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(photos / "fine.png")
    if fault == "decompression bomb":
        bomb = write_png_header(photos / "bomb.png", 15000, 15000)
        result = predict(fitted, tmp_path, "--predictions.images", photos)
        assert_one_line_error(result, f"cannot read image {bomb}", "decompression bomb")
    else:
        result = predict(fitted, tmp_path, "--predictions.images", photos, "--predictions.out", photos)
        assert_one_line_error(result, f"--predictions.out {photos} is a folder")


def test_a_cpu_run_of_days_is_announced_with_its_estimate():
    datamodule = CIFARData(root="unused", val_size=5000)
    model = LitClassifier("wrn-16-4")
    days = L.Trainer(accelerator="cpu", max_epochs=5000, logger=False)
    warning = slow_cpu_warning(days, model, datamodule)
    assert warning is not None and "would take about" in warning and "days" in warning
    assert "5000 epochs of 45,000 images" in warning
    minutes = L.Trainer(accelerator="cpu", max_epochs=8, logger=False)
    assert slow_cpu_warning(minutes, model, CIFARData(root="unused", subset=1000, val_size=1000)) is None


def test_the_estimate_counts_the_images_of_a_tree_and_nothing_where_no_data_can_be(tmp_path):
    tree = make_image_tree(tmp_path / "data", classes=3, per_class=4)
    assert planned_train_images(CIFARData(root=str(tree), val_size=2)) == 3 * 4 - 2
    assert planned_train_images(CIFARData(root=str(tree), val_size=2, subset=3)) == 3 * 3 - 2
    (tmp_path / "empty").mkdir()
    assert planned_train_images(CIFARData(root=str(tmp_path / "empty"), download=False)) == 0
    # class folders without train/: refused by the data step, download or not
    assert planned_train_images(CIFARData(root=str(tree / "train"))) == 0
    # torchvision's files, or a download to come: the data set's own size
    assert planned_train_images(CIFARData(root=str(tmp_path / "empty"), val_size=0)) == 50_000


@pytest.mark.slow
def test_a_recipe_of_days_on_a_cpu_stops_before_training_with_a_command_that_keeps_the_data(tmp_path):
    tree = wrn_data_root()  # the estimate counts the tree's images: the real 50,000
    run = tmp_path / "run"
    result = wrn("fit", "--config", "configs/wrn-28-10.yaml", "--data.root", tree,
                 "--trainer.default_root_dir", run, "--trainer.accelerator", "cpu")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert "would take about" in errors[0] and "days" in errors[0]
    assert f"wrn fit --config configs/quick.yaml --data.root {tree}" in errors[0]
    assert "--allow_slow true" in errors[0]
    assert not (run / "metrics.json").exists() and not (run / "checkpoints").exists()


def test_the_fit_summary_reads_test_accuracies_from_the_record(tmp_path):
    from types import SimpleNamespace

    from wrn.console import fit_summary
    from wrn.files import atomic_write_json

    atomic_write_json(tmp_path / "metrics.json", {
        "status": "finished", "model": "wrn-16-2", "epochs": 8, "wall_seconds": 239.0,
        "images_per_sec": 320.0, "best_val_acc": 0.658, "final_val_acc": 0.65, "test_acc": 0.68,
        "test_acc_best": 0.683})
    trainer = SimpleNamespace(default_root_dir=str(tmp_path), current_epoch=8, loggers=[],
                              checkpoint_callbacks=[SimpleNamespace(dirpath=str(tmp_path / "checkpoints"))])
    summary = fit_summary(trainer)
    assert summary.startswith("wrn-16-2 finished: 8 epochs in 3m59s, 320 training images/s")
    assert "validation accuracy: best 65.8%, final 65.0%" in summary
    assert "test accuracy: final weights 68.0%, best checkpoint 68.3%" in summary
