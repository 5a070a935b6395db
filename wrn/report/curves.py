"""Validation accuracy per epoch of every run, read from the runs' epochs.jsonl: all epochs, and the
last part of training (at least its last 3 epochs) where final accuracies differ by tenths."""

from __future__ import annotations

import contextlib
import math
import sys
from collections import Counter
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib import ticker

from wrn.report.figures import Drawing, PlotOptions, family_style, new_figure, source_style
from wrn.report.results import Group, Run, display_name
from wrn.rundir import read_epochs

LEGEND_COLUMNS = 4  # legend columns under the curve panels
MAX_CURVES = 20  # configurations drawn; past it, those with the lowest error
LAST_EPOCHS = 3  # at least this many epochs in the panel of the end of training


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


def _limits(values: np.ndarray, pad_at_least: float) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    pad = max(0.08 * (high - low), pad_at_least)
    return max(low - pad, 0.0), min(high + pad, 100.0)


def _fit_panels(full, zoom, curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """Both panels' ranges fit the curves; the right one shows the last quarter of training, at
    least its last LAST_EPOCHS epochs (all of them when there are fewer), and says which."""
    first = min(int(epochs.min()) for epochs, _ in curves)
    last = max(int(epochs.max()) for epochs, _ in curves)
    start = max(first, last - max(round((last - first) / 4), LAST_EPOCHS - 1))
    tail = np.concatenate([acc[epochs >= start] for epochs, acc in curves])
    zoom.set(xlim=(start, last) if last > start else (start - 0.5, last + 0.5), ylim=_limits(tail, 0.2),
             title=(f"all epochs ({first}–{last})" if start == first
                    else f"last {last - start + 1} epochs ({start}–{last})"))
    full.set(ylim=_limits(np.concatenate([acc for _, acc in curves]), 1.0),
             title=f"all epochs ({first}–{last})")
    for ax in (full, zoom):
        ax.set(xlabel="epoch", ylabel="validation accuracy (%)")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))


def plot_curves(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    best = {id(g) for g in sorted(groups, key=lambda g: g.error_mean)[:MAX_CURVES]}
    shown = [g for g in groups if id(g) in best]  # in the figure order
    notes = ([f"{len(groups) - len(shown)} of {len(groups)} configurations not drawn (the "
              f"{MAX_CURVES} with the lowest error are)"] if len(shown) < len(groups) else [])
    configs = list(dict.fromkeys(g.config for g in shown))  # a colour each, whatever its source
    colors = matplotlib.colormaps["tab10" if len(configs) <= 10 else "tab20"].colors
    names = Counter((g.source, display_name(g.model, g.dropout)) for g in shown)
    fig, (full, zoom) = new_figure(width=10.0, height=4.8 + 0.2 * math.ceil(len(shown) / LEGEND_COLUMNS),
                                   ncols=2, layout="constrained")
    curves, missing = [], []
    for group in shown:
        dashes = (source_style(options.source_index(group))[1] if options.several_sources
                  else family_style(group.family).linestyle)
        style = dict(color=colors[configs.index(group.config) % len(colors)], ls=dashes, lw=1.1, alpha=0.85)
        name = display_name(group.model, group.dropout)
        label = ((name if names[group.source, name] == 1 else f"{name} [{group.config}]")
                 + (f" (n={group.n})" if group.n > 1 else "")
                 + (f", {group.source}" if options.several_sources else ""))
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
    _fit_panels(full, zoom, curves)
    handles, labels = full.get_legend_handles_labels()
    legend = dict(zip(labels, handles))  # a config whose first seed had no log labels a later one
    title = ["seeds share a colour"] if any(g.n > 1 for g in shown) else []
    if options.several_sources:
        title = ["colour marks the configuration (its seeds, in every source), line style the source"]
    elif len({g.family for g in shown}) > 1:
        title.append("line style marks the family")
    # Under the panels, in columns: beside them it squeezes the panels and collides with the title.
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", fontsize=8, title_fontsize=8,
               ncol=min(LEGEND_COLUMNS, len(legend)), title="; ".join(title) or None)
    fig.suptitle(options.title("validation accuracy per epoch"), size=11)
    return Drawing(fig, notes)
