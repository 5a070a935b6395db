"""benchmarks/campaign.py rehearsed on the CPU, as CI runs it: the same steps as on a GPU, at toy
scale on a few real CIFAR-10 images, leaving records laid out to be committed as they are."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, wrn_data_root

pytestmark = pytest.mark.slow


def test_the_rehearsal_leaves_every_record_within_five_minutes(tmp_path):
    root = wrn_data_root()
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "benchmarks/campaign.py", "--rehearse", "--data-root", str(root),
                           "--out", str(out), "--seconds", "300"], cwd=REPO, capture_output=True,
                          text=True, timeout=360)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "campaign.json").read_text())
    assert [(s["name"], s["outcome"]) for s in summary["steps"]] == [
        ("tests", "ok"), ("speed", "ok"), ("sweep", "ok"), ("report", "ok")]
    assert sum(s["seconds"] for s in summary["steps"]) <= 300
    gpu = summary["gpu"]
    [speed] = (out / "benchmarks" / "results" / gpu).glob("fit-vs-step-*.json")
    rows = json.loads(speed.read_text())["models"]
    assert len(rows) >= 2 and all(row["fit_images_per_sec"] > 0 for row in rows)
    headline = json.loads((out / "benchmarks" / "results" / gpu / "headline.json").read_text())
    assert set(headline["models"]) == {"wrn-40-4", "resnet-1202", "resnet-110"}
    assert headline["thin_over_wide_seconds_per_epoch"] > 0 and headline["rehearsal"] is True
    with open(out / "sweeps" / "results" / f"{gpu}-campaign" / "results.csv", newline="") as f:
        results = list(csv.DictReader(f))
    tested = [r for r in results if r["status"] == "finished" and r["test_acc"]]
    assert len(tested) >= 3, results
    plots = out / "plots" / f"{gpu}-campaign"
    assert (plots / "error_vs_params.png").is_file() and "Spearman" in (plots / "paper.md").read_text()
    # Committable as it is: no checkpoints, and no path of this machine in any record.
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix == ".ckpt"]
    exported = [p for p in files if p.suffix in (".json", ".csv", ".md", ".yaml", ".jsonl")]
    for path in exported:
        text = path.read_text(errors="replace")
        assert str(root) not in text and str(REPO) not in text, path
