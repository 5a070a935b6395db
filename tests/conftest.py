"""Two tiers: `python -m pytest -q -m "not slow"` (in-process, minutes) and the full suite.

A test that starts a process (a `wrn` command, forked warm or not, a sweep's runs, Ray, git) must
be marked `slow`: the guard below fails an unmarked one. Every test, and every process it starts,
caches decoded images in one temporary folder of the session, never in the user's cache.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests import helpers


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


def pytest_sessionfinish(session, exitstatus):
    helpers.close_warm()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if item.get_closest_marker("slow"):
        yield
        return
    start = subprocess.Popen._execute_child

    def refuse(self, args, *rest, **kwargs):
        if list(args)[:1] == ["fc-list"]:  # matplotlib listing fonts for its cache, not the test
            return start(self, args, *rest, **kwargs)
        raise AssertionError(f"{item.nodeid} starts a process ({args!r:.80}): mark it slow")

    def refuse_warm(self, args, *rest, **kwargs):
        raise AssertionError(f"{item.nodeid} starts a process (wrn {args!r:.80}): mark it slow")

    warm_start = helpers.WarmLauncher.start
    subprocess.Popen._execute_child, helpers.WarmLauncher.start = refuse, refuse_warm
    try:
        yield
    finally:
        subprocess.Popen._execute_child, helpers.WarmLauncher.start = start, warm_start


@pytest.fixture
def warm_sweep_runs():
    """The runs an in-process sweep starts, forked warm (see helpers.warm_sweep_runs)."""
    with helpers.warm_sweep_runs():
        yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One real `wrn fit`, in this process, shared by the fast tier: WRN-10-1, 2 epochs on 3
    classes x 16 generated images (4 test images each), test split evaluated at the end.
    Returns (data root, run folder)."""
    from tests.helpers import make_image_tree, wrn_here

    root = tmp_path_factory.mktemp("tiny-run")
    tree = make_image_tree(root / "data", classes=3, per_class=16, test_per_class=4)
    run = root / "run"
    result = wrn_here("fit", "--model.name", "wrn-10-1", "--data.root", tree, "--data.batch_size", 8,
                      "--data.val_size", 12, "--data.num_workers", 0, "--data.download", "false",
                      "--trainer.accelerator", "cpu", "--trainer.max_epochs", 2,
                      "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                      "--trainer.default_root_dir", run, "--model.dropout", 0.3)
    assert result.returncode == 0, result.stderr[-3000:]
    return tree, run
