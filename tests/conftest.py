"""Two tiers: `python -m pytest -q -m "not slow"` (in-process, minutes) and the full suite.

A test that starts a process (a `wrn` command, a sweep's runs, Ray, git) must be marked `slow`:
the guard below fails an unmarked one. Every test, and every process it starts, caches decoded
images in one temporary folder of the session, never in the user's cache.
"""

from __future__ import annotations

import os
import subprocess

import pytest


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if item.get_closest_marker("slow"):
        yield
        return
    start = subprocess.Popen._execute_child

    def refuse(self, args, *rest, **kwargs):
        raise AssertionError(f"{item.nodeid} starts a process ({args!r:.80}): mark it slow")

    subprocess.Popen._execute_child = refuse
    try:
        yield
    finally:
        subprocess.Popen._execute_child = start
