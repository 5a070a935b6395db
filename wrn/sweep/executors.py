"""Where runs execute: one `python -m wrn fit` process per run, waited for locally or by a Ray
task; both executors implement the `Executor` protocol the runner is written against."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from wrn import rundir
from wrn.sweep.state import BUSY, LOG_FILE, Outcome, conclude, record_failure

POLL_SECONDS = 0.5  # how often the local executor looks at its processes
STOP_GRACE_SECONDS = 10.0  # after SIGTERM, how long a run may take to stop before SIGKILL
RAY_LOCAL_CPUS = 2  # CPU slots of a local Ray instance; a CPU run takes one (Ray: 1 thread)


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs to run one attempt; plain data, so Ray can ship it."""

    run_id: str
    run_dir: str  # absolute
    fit_args: tuple[str, ...]  # after `python -m wrn fit`
    identity: dict  # for the failure record (see state.record_failure)
    cwd: str  # the sweep's working directory: relative pass-through paths mean the same


class Executor(Protocol):
    capacity: int  # runs at once
    description: str  # one line for the sweep's header, e.g. "local, CPU, one run at a time"

    @property
    def running(self) -> list[str]:
        """Run ids of the attempts going now."""

    def has_free_slot(self) -> bool: ...

    def submit(self, task: RunTask) -> Outcome | None:
        """Start an attempt; an Outcome at once only when it could not start (held elsewhere)."""

    def wait(self, timeout: float) -> list[Outcome]:
        """Outcomes of attempts that ended within `timeout` seconds."""

    def shutdown(self) -> None:
        """Stop what still runs (SIGTERM, then SIGKILL after a grace); it stays resumable."""


_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None  # loaded before any fork
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent() -> None:
    """In the child before exec: Linux kills it when the sweep dies, even by SIGKILL."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Launched:
    task: RunTask
    process: subprocess.Popen
    lock: IO
    log: IO
    before: tuple | None  # metrics.json signature at launch
    started: float  # time.monotonic()


def launch(task: RunTask, env_overrides: dict[str, str]) -> Launched | None:
    """Start the run's process, output appended to log.txt; None when another sweep holds it."""
    run_dir = Path(task.run_dir)
    lock = rundir.acquire_lock(run_dir)
    if lock is None:
        return None
    command = [sys.executable, "-m", "wrn", "fit", *task.fit_args]
    log = open(run_dir / LOG_FILE, "ab")
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
    log.flush()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", rundir.LOCK_FD_ENV: str(lock.fileno()),
           **env_overrides}  # unbuffered: log lines in order
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
        cwd=task.cwd if os.path.isdir(task.cwd) else None,
        pass_fds=(lock.fileno(),),  # the child holds the lock too, for as long as it lives
        preexec_fn=_die_with_parent if _LIBC is not None else None)
    return Launched(task, process, lock, log, rundir.record_signature(run_dir), time.monotonic())


def finish(launched: Launched) -> Outcome:
    seconds = time.monotonic() - launched.started
    task = launched.task
    try:
        return conclude(task.run_id, Path(task.run_dir), task.identity, launched.process.returncode,
                        launched.before, seconds)
    finally:
        launched.log.close()
        launched.lock.close()


def execute(task: RunTask) -> Outcome:
    """One attempt from start to end (a Ray task's body)."""
    launched = launch(task, {})
    if launched is None:
        return Outcome(task.run_id, BUSY, "held by another sweep")
    launched.process.wait()
    return finish(launched)


class LocalExecutor:
    """Runs in this process's children: one slot on CPU (runs in sequence), or per GPU
    `trials_per_gpu` slots, each run seeing only its GPU through CUDA_VISIBLE_DEVICES."""

    def __init__(self, gpus: list[int], trials_per_gpu: int = 1):
        self.slots = [{"CUDA_VISIBLE_DEVICES": str(g)} for g in gpus for _ in range(trials_per_gpu)] \
            or [{}]
        self.capacity = len(self.slots)
        self._running_in: dict[int, Launched] = {}  # slot index -> its run
        self.description = (f"local, {len(gpus)} GPU(s) x {trials_per_gpu} run(s) each" if gpus
                            else "local, CPU, one run at a time")

    @property
    def running(self) -> list[str]:
        return [launched.task.run_id for launched in self._running_in.values()]

    def has_free_slot(self) -> bool:
        return len(self._running_in) < len(self.slots)

    def submit(self, task: RunTask) -> Outcome | None:
        slot = next(i for i in range(len(self.slots)) if i not in self._running_in)
        launched = launch(task, self.slots[slot])
        if launched is None:
            return Outcome(task.run_id, BUSY, "held by another sweep")
        self._running_in[slot] = launched
        return None

    def wait(self, timeout: float) -> list[Outcome]:
        deadline = time.monotonic() + timeout
        while True:
            ended = [slot for slot, run in self._running_in.items() if run.process.poll() is not None]
            if ended or time.monotonic() >= deadline or not self._running_in:
                return [finish(self._running_in.pop(slot)) for slot in ended]
            time.sleep(POLL_SECONDS)

    def shutdown(self) -> None:
        for run in self._running_in.values():
            run.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for run in self._running_in.values():
            try:
                run.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait()
            run.log.close()
            run.lock.close()
        self._running_in.clear()


AUTH_WORDS = ("unauthenticated", "invalidauthtoken", "authentication")
PROBE_SECONDS = 5.0  # a cluster address that does not answer a TCP connect within this is down
TOKEN_HINT = ("the cluster uses token authentication: export RAY_AUTH_MODE=token and "
              "RAY_AUTH_TOKEN=<token> (or RAY_AUTH_TOKEN_PATH=<file holding it>); "
              "`ray get-auth-token` on the head prints it")


def probe_address(address: str) -> None:
    """One TCP connect says at once whether anything listens at HOST:PORT (Ray retries for
    minutes); other addresses ('auto') are left to Ray."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ValueError(f"--address {address}: cannot join the Ray cluster: nothing answers at "
                         f"{host}:{port} ({reason}); is a Ray head running there "
                         "(`ray start --head`), and is the port its GCS port?") from None


def join_error(address: str, exc: BaseException, ray_log: str = "") -> str:
    """Which address could not be joined, why, and what to try; `ray_log`: what Ray printed
    meanwhile (a refused token shows only there)."""
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    said = f"{reason} {ray_log}".lower()
    if any(word in said for word in AUTH_WORDS):
        return (f"--address {address}: cannot join the Ray cluster: it refused this client's "
                f"authentication token ({type(exc).__name__}); {TOKEN_HINT}")
    return (f"--address {address}: cannot join the Ray cluster ({type(exc).__name__}: {reason}); "
            f"something listens there: is it the head's GCS port? If the cluster uses token "
            f"authentication, {TOKEN_HINT.split(': ', 1)[1]}")


@contextlib.contextmanager
def captured_stderr():
    """Ray's core logs its retries to file descriptor 2: kept aside while joining (the yielded
    function returns them) and replayed only when the join succeeds, so a failure is one line."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)

        def text() -> str:
            log.seek(0)
            return log.read().decode("utf-8", errors="replace")

        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sys.stderr.write(text())


class RayExecutor:
    """Each run a Ray task running the same process: a small local Ray by default, or a cluster
    (`address`) whose nodes see the output folder at the same path."""

    def __init__(self, gpus: list[int] | None, trials_per_gpu: int = 1, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise ValueError("the ray executor needs Ray: pip install 'wrn[ray]'") from None
        self.ray = ray
        self._owns_ray = not ray.is_initialized() and not address
        if not ray.is_initialized():
            self._init(gpus, address)
        total_gpus = int(ray.cluster_resources().get("GPU", 0))
        use_gpus = total_gpus if gpus is None else min(len(gpus), total_gpus)
        if use_gpus:
            # Fractional GPUs pack trials; no CPU reservation, so packing is limited by GPUs only.
            options = {"num_gpus": 1.0 / trials_per_gpu, "num_cpus": 0}
            self.capacity = use_gpus * trials_per_gpu
        else:
            options = {"num_cpus": 1}
            self.capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(execute).options(max_retries=0, **options)  # the sweep retries
        self._pending: dict = {}  # ObjectRef -> RunTask
        where = address or "local"
        self.description = (f"ray ({where}), {use_gpus} GPU(s) x {trials_per_gpu} run(s) each"
                            if use_gpus else f"ray ({where}), CPU, {self.capacity} run(s) at once")

    def _init(self, gpus: list[int] | None, address: str | None) -> None:
        import logging

        settings = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if address:
            probe_address(address)
            with captured_stderr() as ray_log:
                try:
                    self.ray.init(address=address, **settings)
                except Exception as exc:  # noqa: BLE001 - ConnectionError, refused tokens
                    raise ValueError(join_error(address, exc, ray_log())) from None
            return
        previous = os.environ.get("CUDA_VISIBLE_DEVICES")
        if gpus is not None:  # the Ray processes started now see only these GPUs
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        try:
            self.ray.init(num_cpus=min(RAY_LOCAL_CPUS, os.cpu_count() or 1),
                          num_gpus=len(gpus) if gpus is not None else None, **settings)
        finally:
            if previous is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = previous

    @property
    def running(self) -> list[str]:
        return [task.run_id for task in self._pending.values()]

    def has_free_slot(self) -> bool:
        return len(self._pending) < self.capacity

    def submit(self, task: RunTask) -> Outcome | None:
        self._pending[self._remote.remote(task)] = task
        return None

    def wait(self, timeout: float) -> list[Outcome]:
        if not self._pending:
            return []
        refs = list(self._pending)
        ready, rest = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            ready += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        return [self._collect(ref) for ref in ready]

    def _collect(self, ref) -> Outcome:
        task = self._pending.pop(ref)
        try:
            return self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a dead worker or node: the run failed, the sweep goes on
            reason = "ray task failed: " + " ".join(str(exc).split())[:500]
            record_failure(Path(task.run_dir), task.identity, reason)
            return Outcome(task.run_id, rundir.FAILED, reason)

    def shutdown(self) -> None:
        for ref in list(self._pending):
            self.ray.cancel(ref, force=True)  # kills the worker, and with it (PDEATHSIG) the run
        self._pending.clear()
        if self._owns_ray:
            self.ray.shutdown()
