"""Shared test data: small generated image trees, and the real CIFAR-10 tree from WRN_DATA."""

import contextlib
import copy
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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


class WarmProcess:
    """A `wrn` command forked by tests/zygote.py (a process of its own, without the seconds of
    imports), used as a subprocess.Popen is: pid, poll, wait, send_signal, kill, communicate."""

    def __init__(self, launcher: "WarmLauncher", pid: int, args: list[str], piped: dict[str, Path]):
        self.launcher, self.pid, self.args = launcher, pid, args
        self.returncode: int | None = None
        self.stdout, self.stderr = (open(piped[name], errors="replace") if name in piped else None
                                    for name in ("stdout", "stderr"))

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.launcher.ended.get(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        with self.launcher.changed:
            if not self.launcher.changed.wait_for(lambda: self.pid in self.launcher.ended, timeout):
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.poll()

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # as Popen: never a signal to a pid that may have been reused
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str | None, str | None]:
        self.wait(timeout)
        said = tuple(stream.read() if stream else None for stream in (self.stdout, self.stderr))
        for stream in (self.stdout, self.stderr):  # as Popen.communicate closes its pipes
            if stream:
                stream.close()
        return said


class WarmLauncher:
    """The session's tests/zygote.py process: `start` forks a `wrn` command from it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.channel, theirs = socket.socketpair()  # for descriptors the commands inherit
        with open(folder / "zygote.log", "w") as log, theirs:
            self.server = subprocess.Popen([sys.executable, "-m", "tests.zygote", str(theirs.fileno())],
                                           cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=log, pass_fds=(theirs.fileno(),),
                                           start_new_session=True, text=True)
        self.ended: dict[int, int] = {}
        self.started: list[int] = []
        self.changed = threading.Condition()
        self.lock = threading.Lock()
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        for line in self.server.stdout:
            answer = json.loads(line)
            with self.changed:
                if "started" in answer:
                    self.started.append(answer["started"])
                else:
                    self.ended[answer["ended"]] = answer["code"]
                self.changed.notify_all()

    def start(self, args, *, cwd=REPO, env=None, stdout=None, stderr=None,
              start_new_session=False, pass_fds=()) -> WarmProcess:
        """Like subprocess.Popen([sys.executable, "-m", "wrn", *args], ...), text mode. stdout and
        stderr: subprocess.PIPE (read back by communicate), DEVNULL or None, or an open file;
        pass_fds: descriptors the command inherits, at the same numbers."""
        args = [str(arg) for arg in args]
        outputs, piped = {}, {}
        for name, target in (("stdout", stdout), ("stderr", stderr)):
            if target == subprocess.PIPE:
                outputs[name] = piped[name] = Path(tempfile.mkstemp(prefix=name, dir=self.folder)[1])
            elif target == subprocess.STDOUT:
                outputs[name] = outputs["stdout"]
            elif hasattr(target, "name"):
                target.flush()
                outputs[name] = Path(target.name)
        request = {"argv": args, "cwd": str(cwd), "env": dict(os.environ if env is None else env),
                   "session": start_new_session, "pass_fds": list(pass_fds),
                   **{name: str(outputs[name]) if name in outputs else None
                      for name in ("stdout", "stderr")}}
        with self.lock, self.changed:
            known = len(self.started)
            if pass_fds:
                socket.send_fds(self.channel, [b"."], list(pass_fds))
            self.server.stdin.write(json.dumps(request) + "\n")
            self.server.stdin.flush()
            self.changed.wait_for(
                lambda: len(self.started) > known or self.server.poll() is not None, DEADLINE_S)
            if len(self.started) <= known:
                pytest.fail("tests/zygote.py did not fork the command:\n"
                            + (self.folder / "zygote.log").read_text()[-3000:])
            pid = self.started[known]
        return WarmProcess(self, pid, args, piped)

    def run(self, args, *, cwd=REPO, env=None, timeout: float = 600) -> subprocess.CompletedProcess:
        """Like subprocess.run([sys.executable, "-m", "wrn", *args], capture_output=True, text=True)."""
        process = self.start(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = process.communicate(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=60)
        self.channel.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class WarmSubprocess:
    """The `subprocess` module as a sweep's executor sees it when tests/conftest.py's
    `warm_sweep_runs` fixture is on: each run's `python -m wrn fit` is forked by the session's
    launcher, with its log, environment, working directory and run lock (pass_fds) as the sweep
    gives them. It is not the sweep's child: it dies with the test session, not with the sweep."""

    def __getattr__(self, name):
        return getattr(subprocess, name)

    @staticmethod
    def Popen(command, *, stdin=None, stdout=None, stderr=None, env=None, cwd=None, pass_fds=(),
              preexec_fn=None) -> WarmProcess:  # noqa: N802 - stands in for subprocess.Popen
        assert list(command[:3]) == [sys.executable, "-m", "wrn"], command
        return warm().start(command[3:], cwd=cwd or os.getcwd(), env=env, stdout=stdout, stderr=stderr,
                            pass_fds=pass_fds)


@contextlib.contextmanager
def warm_sweep_runs():
    """Within it, the runs an in-process sweep starts are forked from tests/zygote.py instead of
    starting `python -m wrn fit` cold (seconds of imports each). Ray's runs, and those of a sweep
    that is a process of its own, still start cold: the command itself stays tested."""
    from wrn.sweep import executors

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(executors, "subprocess", WarmSubprocess())
        yield


_launcher: list[WarmLauncher] = []


def warm() -> WarmLauncher:
    """The session's launcher, started on first use (from a slow test: it starts a process) and
    closed by tests/conftest.py when the session ends."""
    if not _launcher:
        _launcher.append(WarmLauncher(Path(tempfile.mkdtemp(prefix="wrn-warm-"))))
    return _launcher[0]


def close_warm() -> None:
    while _launcher:
        _launcher.pop().close()
