"""A process that has imported what a `wrn` command imports, and forks one command per request.

The slow tier starts about a hundred `wrn` processes, and each spends most of its few seconds
importing Lightning, torchmetrics and torchvision. A child forked from here is a process of its
own all the same: its own pid, environment, working directory, standard files, session, signals
and exit status; it runs `wrn.cli.main` as `python -m wrn` does, and exits through the
interpreter's normal shutdown. Tests of start-up itself (the entry point, `--help` without torch,
DDP's re-launch of the command line) start `python -m wrn` as before.

Protocol, one JSON object a line: the test writes {"argv", "cwd", "env", "stdout", "stderr",
"session"} on standard input; this process answers {"started": pid} and, once that child ends,
{"ended": pid, "code": returncode} (negative: the signal that ended it, as subprocess reports it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import select
import signal
import sys
from pathlib import Path

PRELOAD = ("wrn.cli", "wrn.console", "wrn.errors", "wrn.train", "wrn.module", "wrn.recorder",
           "wrn.data", "wrn.predict", "wrn.complexity", "wrn.sweep.cli", "lightning.pytorch",
           "lightning.pytorch.cli", "torchvision")


def child(request: dict, requests: int, answers) -> int:
    """In the forked child: become the requested process, then run the command."""
    os.close(requests)
    answers.close()
    if request["session"]:
        os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND), fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # What the interpreter does at start-up with PYTHONPATH: its folders first on sys.path, and a
    # sitecustomize.py found there run (tests use one to hold or break a run at a chosen point).
    paths = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[1:1] = [p for p in paths if p not in sys.path]
    for folder in paths:
        if (Path(folder) / "sitecustomize.py").is_file():
            runpy.run_path(str(Path(folder) / "sitecustomize.py"), run_name="sitecustomize")
            break
    # As `python -m wrn` has them: Lightning's DDP launcher starts the other ranks from these.
    sys.argv = [str(Path(sys.modules["wrn"].__file__).parent / "__main__.py"), *request["argv"]]
    sys.modules["__main__"].__spec__ = importlib.util.find_spec("wrn.__main__")
    from wrn.cli import main

    try:
        main(request["argv"])
    except SystemExit as exc:
        return exc.code
    return 0


def serve() -> int | None:
    """Answer requests until standard input closes; return in a forked child, with its exit code."""
    for name in PRELOAD:
        __import__(name)
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
                return None
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    return child(request, requests, out)
                running.add(pid)
                say({"started": pid})
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                say({"ended": pid, "code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    sys.exit(serve())
