"""A process that has imported what a `wrn` command imports, and forks one command per request.

The slow tier starts about a hundred `wrn` processes, and each spends most of its few seconds
importing Lightning, torchmetrics and torchvision. A child forked from here is a process of its
own all the same: its own pid, environment, working directory, standard files, session, signals
and exit status; it runs `wrn.cli.main` as `python -m wrn` does, and exits as the interpreter
does (threads joined, atexit functions run, output flushed) without tearing down the modules it
inherited. Tests of start-up itself (the entry point, `--help` without torch, DDP's re-launch of
the command line) start `python -m wrn` as before.

Protocol, one JSON object a line: the test writes {"argv", "cwd", "env", "stdout", "stderr",
"session", "pass_fds"} on standard input; this process answers {"started": pid} and, once that
child ends, {"ended": pid, "code": returncode} (negative: the signal that ended it, as subprocess
reports it). Descriptors the command must inherit (`pass_fds`, e.g. the run lock a sweep holds)
arrive first on the Unix socket named by the first argument, and keep their numbers in the child.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import gc
import importlib.util
import json
import os
import runpy
import select
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path

PRELOAD = ("wrn.cli", "wrn.console", "wrn.errors", "wrn.train", "wrn.module", "wrn.recorder",
           "wrn.data", "wrn.predict", "wrn.complexity", "wrn.sweep.cli", "lightning.pytorch",
           "lightning.pytorch.cli", "torchvision")
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_LIBC = ctypes.CDLL(None)


def child(request: dict, requests: int, answers, channel: socket.socket, passed: list[int],
          parent: int) -> None:
    """In the forked child: become the requested process, run the command, and exit."""
    # Killed with this process, which ends with the test session (its standard input closes),
    # even when the session is killed: a command held by a test never outlives it.
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
    os.close(requests)
    answers.close()
    channel.close()
    # Out of the way first (a passed descriptor may sit on another's number), then in place.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1000) for fd in passed]
    for fd, number in zip(high, request["pass_fds"]):
        os.dup2(fd, number)
    for fd in [*passed, *high]:
        if fd not in request["pass_fds"]:
            os.close(fd)
    if request["session"]:
        os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND), fd)
    if request["env"].get("PYTHONUNBUFFERED"):  # as the interpreter makes them at start-up
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True, write_through=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # As `python -m wrn` has them (a sitecustomize may read them): Lightning's DDP launcher
    # starts the other ranks from these.
    sys.argv = [str(Path(sys.modules["wrn"].__file__).parent / "__main__.py"), *request["argv"]]
    sys.modules["__main__"].__spec__ = importlib.util.find_spec("wrn.__main__")
    # What the interpreter does at start-up with PYTHONPATH: its folders first on sys.path, and a
    # sitecustomize.py found there run (tests use one to hold or break a run at a chosen point).
    paths = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[1:1] = [p for p in paths if p not in sys.path]
    for folder in paths:
        if (Path(folder) / "sitecustomize.py").is_file():
            runpy.run_path(str(Path(folder) / "sitecustomize.py"), run_name="sitecustomize")
            break
    from wrn.cli import main

    try:
        main(request["argv"])
        code = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # as the interpreter reports an uncaught exception
        traceback.print_exc()
        code = 1
    if not isinstance(code, int):  # None is success; other values are printed, as sys.exit does
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    exit_now(code)


def exit_now(code: int) -> None:
    """The interpreter's exit, less its teardown of what this process inherited: wait for
    threads, run the atexit functions (multiprocessing's, a sitecustomize's), flush, and end. The
    teardown would touch every object the parent imported, copying each page of its memory, and
    take longer than most commands; the parent's objects are frozen out of the garbage collector
    for the same reason (`gc.freeze` in `serve`)."""
    threading._shutdown()  # noqa: SLF001 - what Py_Finalize does first
    atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code & 0xFF)


def serve(channel: socket.socket) -> None:
    """Answer requests until standard input closes."""
    for name in PRELOAD:
        __import__(name)
    gc.freeze()  # never collected in a child, so never written to (see exit_now)
    parent = os.getpid()
    requests = os.dup(0)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    pending = b""
    running: set[int] = set()

    def say(message: dict) -> None:
        out.write(json.dumps(message) + "\n")

    while True:
        readable, _, _ = select.select([requests], [], [], 0.02)
        if readable:
            chunk = os.read(requests, 1 << 16)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                passed = []
                if request["pass_fds"]:
                    _, passed, _, _ = socket.recv_fds(channel, 1, len(request["pass_fds"]))
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    child(request, requests, out, channel, passed, parent)
                for fd in passed:
                    os.close(fd)
                running.add(pid)
                say({"started": pid})
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                say({"ended": pid, "code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
