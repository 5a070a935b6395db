"""The two tiers' machinery: the fast tier cannot start a process unnoticed, and a `wrn` command
forked warm (tests.helpers.warm) behaves as `python -m wrn` started cold and ends with the session."""

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


SESSION = """
import os, pathlib, sys
from tests import helpers
shim = pathlib.Path(sys.argv[1])
process = helpers.warm().start(["count", "wrn-10-1"], env={**os.environ, "PYTHONPATH": str(shim)})
print(process.pid, flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_a_warm_command_never_outlives_a_killed_test_session(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import time\ntime.sleep(600)\n")  # held until killed
    session = subprocess.Popen([sys.executable, "-c", SESSION, str(shim)], cwd=helpers.REPO,
                               env={**os.environ, "TMPDIR": str(tmp_path)},  # its launcher's folder
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    held = int(session.stdout.readline())
    assert os.path.exists(f"/proc/{held}")
    session.kill()  # as a CI timeout or a second Ctrl-C ends pytest: no clean-up of its own
    session.wait()
    helpers.wait_for(lambda: not os.path.exists(f"/proc/{held}"), "the held command to end", timeout=30)
