"""The two tiers' machinery: the fast tier cannot start a process unnoticed, and a `wrn` command
forked warm (tests.helpers.warm) behaves as `python -m wrn` started cold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests import helpers


def test_an_unmarked_test_that_starts_a_process_fails_naming_the_marker():
    with pytest.raises(AssertionError, match="mark it slow"):
        subprocess.run(["true"])
    with pytest.raises(AssertionError, match="mark it slow"):
        helpers.WarmLauncher.start(None, ["count", "wrn-10-1"])


@pytest.mark.slow
def test_a_warm_command_is_a_process_of_its_own_that_prints_and_exits_as_a_cold_one(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for args in (["count", "wrn-10-1"], ["fit", "--model.name", "wrn-9-1"]):
        cold = subprocess.run([sys.executable, "-m", "wrn", *args], cwd=helpers.REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        warm = helpers.warm().run(args, env=env)
        assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout), warm.stderr[-2000:]
        assert [line for line in warm.stderr.splitlines() if line.startswith("error:")] == \
            [line for line in cold.stderr.splitlines() if line.startswith("error:")]
    assert cold.returncode == 2  # the bad depth, named in one line by both

    # Its own pid, working directory and environment; a sitecustomize.py on PYTHONPATH runs first.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['MARK']).write_text(f'{os.getpid()} {os.getcwd()}')\n")
    mark = tmp_path / "mark"
    process = helpers.warm().start(["count", "wrn-10-1"], cwd=tmp_path,
                                   env={**env, "MARK": str(mark), "PYTHONPATH": str(shim)})
    assert process.wait(timeout=300) == 0
    pid, cwd = mark.read_text().split(" ", 1)
    assert int(pid) == process.pid != os.getpid() and cwd == str(tmp_path)

    # A signal it does not handle ends it as it ends a cold process: returncode -signal.
    shim.joinpath("sitecustomize.py").write_text("import time\ntime.sleep(600)\n")
    process = helpers.warm().start(["count", "wrn-10-1"], env={**env, "PYTHONPATH": str(shim)})
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
