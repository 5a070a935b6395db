"""Validation accuracy per epoch of every run, read from the runs' epochs.jsonl."""

from __future__ import annotations

import contextlib
import math
import sys
from collections import Counter
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib import ticker

from wrn.report.figures import Drawing, PlotOptions
from wrn.report.results import Group, Run, display_name
from wrn.report.styles import family_style, new_figure
from wrn.rundir import read_epochs

LEGEND_COLUMNS = 4  # legend columns under the curve panels
MAX_CURVES = 20  # configurations drawn; past it, those with the lowest error


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def load_curve(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, val accuracy %) from the run's epochs.jsonl; None when there is no usable log."""
    if run.run_dir is None:
        return None
    records, problems = read_epochs(run.run_dir)
    for problem in problems:
        warn(problem)
    by_epoch = {}  # a resumed run may log an epoch twice; the later line is the one that counted
    for record in records:
        with contextlib.suppress(KeyError, TypeError, ValueError):  # e.g. a test-only line
            by_epoch[int(record["epoch"])] = float(record["val_acc"])
    if not by_epoch:
        return None
    epochs = np.array(sorted(by_epoch))
    return epochs, 100.0 * np.array([by_epoch[e] for e in epochs])


def plot_curves(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    best = {id(g) for g in sorted(groups, key=lambda g: g.error_mean)[:MAX_CURVES]}
    shown = [g for g in groups if id(g) in best]  # in the figure order
    notes = ([f"{len(groups) - len(shown)} of {len(groups)} configurations not drawn (the "
              f"{MAX_CURVES} with the lowest error are)"] if len(shown) < len(groups) else [])
    colors = matplotlib.colormaps["tab10" if len(shown) <= 10 else "tab20"].colors
    names = Counter(display_name(g.model, g.dropout) for g in shown)
    fig, (full, zoom) = new_figure(width=10.0, height=4.8 + 0.2 * math.ceil(len(shown) / LEGEND_COLUMNS),
                                   ncols=2, layout="constrained")
    curves, missing = [], []
    for i, group in enumerate(shown):
        style = dict(color=colors[i % len(colors)], ls=family_style(group.family).linestyle, lw=1.1,
                     alpha=0.85)
        name = display_name(group.model, group.dropout)
        label = (name if names[name] == 1 else f"{name} [{group.config}]") + (
            f" (n={group.n})" if group.n > 1 else "")
        for run in group.runs:
            curve = load_curve(run)
            if curve is None:
                missing.append(f"{group.config} seed {run.seed or '?'}: no epochs log in "
                               f"{run.run_dir}; curve skipped")
                continue
            curves.append(curve)
            full.plot(*curve, **style, label=label)
            zoom.plot(*curve, **style)
    for message in missing[:3]:
        warn(message)
    if len(missing) > 3:
        warn(f"{len(missing) - 3} more runs without an epochs log; their curves are skipped")
    if not curves:
        return None
    # The last quarter of training, where final accuracies differ by tenths of a percent.
    first = min(int(epochs.min()) for epochs, _ in curves)
    last = max(int(epochs.max()) for epochs, _ in curves)
    start = last - max((last - first) / 4, 1)
    tail = np.concatenate([acc[epochs >= start] for epochs, acc in curves])
    low, high = float(tail.min()), float(tail.max())
    pad = max(0.08 * (high - low), 0.2)
    zoom.set(xlim=(start, last), ylim=(low - pad, high + pad), title="last quarter of training")
    full.set(ylim=(0, 100), title="all epochs")
    for ax in (full, zoom):
        ax.set(xlabel="epoch", ylabel="validation accuracy (%)")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    handles, labels = full.get_legend_handles_labels()
    legend = dict(zip(labels, handles))  # a config whose first seed had no log labels a later one
    title = ["seeds share a colour"] if any(g.n > 1 for g in shown) else []
    if len({g.family for g in shown}) > 1:
        title.append("line style marks the family")
    # Under the panels, in columns: beside them it squeezes the panels and collides with the title.
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", fontsize=8, title_fontsize=8,
               ncol=min(LEGEND_COLUMNS, len(legend)), title="; ".join(title) or None)
    fig.suptitle(options.title("validation accuracy per epoch"), size=11)
    return Drawing(fig, notes)
