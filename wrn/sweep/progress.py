"""Progress across a sweep's runs: a rich live view on a terminal, one plain line per event
otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, TextIO

from wrn.report.text import duration
from wrn.rundir import FAILED, FINISHED
from wrn.sweep.state import Outcome


@dataclass
class Tally:
    total: int  # runs in the plan (skipped points not included)
    done: int
    failed: int
    skipped: int
    left: int
    capacity: int  # runs at once
    running: dict[str, float] = field(default_factory=dict)  # run id -> time.monotonic() at start
    seconds: list[float] = field(default_factory=list)  # wall time of runs finished now
    started: float = field(default_factory=time.monotonic)
    estimate: Callable[[], float | None] = lambda: None  # the runs left, from measured speeds

    def eta(self) -> float | None:
        """From the speeds measured so far (the sweep's own runs included), else from the mean
        wall time of the runs finished in this invocation."""
        estimated = self.estimate()
        if estimated is not None or not self.seconds:
            return estimated
        remaining = self.left + len(self.running)
        return sum(self.seconds) / len(self.seconds) * remaining / max(1, self.capacity)

    def line(self) -> str:
        return (f"done {self.done}/{self.total}, running {len(self.running)}, failed {self.failed}, "
                f"left {self.left}, skipped {self.skipped} | elapsed "
                f"{duration(time.monotonic() - self.started)}, ETA {duration(self.eta())}")


class PlainProgress:
    """One line per event, for logs and CI."""

    def __init__(self, tally: Tally, stream: TextIO = sys.stdout):
        self.tally, self.stream = tally, stream

    def _print(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def started(self, run_id: str, label: str, resume: bool) -> None:
        self.tally.running[run_id] = time.monotonic()
        self.tally.left -= 1
        self._print(f"{'resume' if resume else 'start '}   {run_id}  {label}")

    def ended(self, outcome: Outcome, retry: bool) -> None:
        self.tally.running.pop(outcome.run_id, None)
        if outcome.status == FINISHED:
            self.tally.done += 1
            self.tally.seconds.append(outcome.seconds)
            acc = outcome.best_val_acc
            accuracy = f"best_val_acc {100 * acc:.2f}%" if acc is not None else "no accuracy"
            what = f"finished {outcome.run_id}  {accuracy} in {duration(outcome.seconds)}"
        elif retry:
            self.tally.left += 1
            what = f"failed   {outcome.run_id}  (will retry): {outcome.error}"
        else:
            self.tally.failed += outcome.status == FAILED
            what = f"{outcome.status:8} {outcome.run_id}: {outcome.error}"
        self._print(f"{what} | {self.tally.line()}")

    def note(self, text: str) -> None:
        self._print(text)

    def tick(self) -> None:
        pass


class LiveProgress(PlainProgress):
    """A rich Live panel: a bar over all runs, the counts, and the runs going now; events print
    above it. Refreshed by `tick` from the sweep's own loop, so no extra thread."""

    def __init__(self, tally: Tally, stream: TextIO = sys.stdout):
        from rich.console import Console
        from rich.live import Live

        super().__init__(tally, stream)
        self.console = Console(file=stream)
        self.live = Live(self._render(), console=self.console, auto_refresh=False, transient=False)

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.tick()
        self.live.__exit__(*exc)

    def _print(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text.assemble((time.strftime("%H:%M:%S"), "dim"), " ", text),
                           highlight=False, soft_wrap=True)  # Text: errors may hold [brackets]
        self.tick()

    def _render(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        tally = self.tally
        finished = tally.done + tally.failed
        table = Table.grid(padding=(0, 2))
        table.add_row(ProgressBar(total=max(1, tally.total), completed=finished, width=40),
                      f"{finished}/{tally.total}")
        table.add_row("", tally.line())
        for run_id, start in tally.running.items():
            table.add_row(f"  running {run_id}", duration(time.monotonic() - start))
        return table

    def tick(self) -> None:
        self.live.update(self._render(), refresh=True)


def make_progress(tally: Tally, stream: TextIO = sys.stdout) -> PlainProgress:
    return LiveProgress(tally, stream) if stream.isatty() else PlainProgress(tally, stream)
