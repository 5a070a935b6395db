"""Shared test data: small generated image trees, and the real CIFAR-10 tree from WRN_DATA."""

import contextlib
import copy
import io
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "WRN_DATA"  # CI exports it: the real CIFAR-10 image-folder tree
DEADLINE_S = 240  # s, for anything a test waits on; the polls return as soon as it happens


def wrn_data_root() -> Path:
    """The real data, or a skip where it was not asked for; a failure where it was asked for but is
    missing, so CI can never pass by silently skipping the real-data tests."""
    value = os.environ.get(DATA_ENV)
    if not value:
        pytest.skip(f"{DATA_ENV} is not set")
    root = Path(value)
    if not (root / "train").is_dir():
        pytest.fail(f"{DATA_ENV}={value} is set but {root / 'train'} does not exist")
    return root


def make_image_tree(root: Path, classes: int = 3, per_class: int = 10, test_per_class: int = 0,
                    seed: int = 0) -> Path:
    """train/<class>/*.png (and test/<class>/*.png): each class a noisy constant colour, so a
    tiny network can learn it in an epoch or two."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 225, size=(classes, 3))
    for split, count in (("train", per_class), ("test", test_per_class)):
        for c in range(classes if count else 0):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.integers(-30, 30, size=(32, 32, 3))
                pixels = np.clip(colours[c] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


def checkpoint_epoch(path: Path) -> int:
    """The last finished epoch (0-based) of a Lightning checkpoint."""
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def write_spec(folder: Path, base: dict, data_root: Path, **spec) -> Path:
    """spec.yaml beside base.yaml (`base` on data_root); the spec names its base relative to itself."""
    folder.mkdir(parents=True, exist_ok=True)
    base = copy.deepcopy(base)
    base["data"]["root"] = str(data_root)
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", **spec}, sort_keys=False))
    return path


def wait_for(condition, what: str, process: subprocess.Popen | None = None,
             timeout: float = DEADLINE_S, log: Path | None = None):
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline or
    when `process` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        ended = process is not None and process.poll() is not None
        if ended or time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            pytest.fail(f"{'process ended' if ended else 'timed out'} waiting for {what}\n{tail}")
        time.sleep(0.02)


def wrn_here(*args, env: dict | None = None) -> SimpleNamespace:
    """`wrn ARGS` in this process (no start-up cost): its exit code and what it printed, shaped
    like subprocess.run's result. For the errors a command raises before or around its work; a
    process of its own stays the test of real exit codes, signals and start-up."""
    from wrn.cli import main

    saved = dict(os.environ)
    os.environ.pop("WRN_DEBUG", None)
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([str(arg) for arg in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
