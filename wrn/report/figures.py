"""Error against parameters, multiply-adds (MACs) and training cost, with the Pareto front and labelled points."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from wrn.report import paper
from wrn.report.labels import MAX_LABELS, PointLabel, place_labels, point_boxes
from wrn.report.results import (DATASET_NAMES, Group, display_name, error_label, error_split, family_of_model,
                                family_rank, finite, pareto_front)
from wrn.report.styles import MARKER_SIZE, family_style, new_figure
from wrn.report.text import si


@dataclass(frozen=True)
class PlotOptions:
    dataset: str = "cifar10"
    with_paper: bool = False
    about: str = ""  # what the runs were, e.g. "300 images per class, 6 epochs"

    @property
    def dataset_name(self) -> str:
        return DATASET_NAMES.get(self.dataset, self.dataset)

    def title(self, what: str) -> str:
        """'CIFAR-10: test error vs parameters', then a line saying what the runs were."""
        return f"{self.dataset_name}: {what}" + (f"\n{self.about}" if self.about else "")


@dataclass
class Drawing:
    figure: Figure
    notes: list[str] = field(default_factory=list)  # for the command to print, not drawn


def placement_notes(placements: Sequence[tuple[int, int]]) -> list[str]:
    crowded, capped = map(sum, zip(*placements))
    notes = [crowded and f"{crowded} crowded label{'s' if crowded > 1 else ''} left out",
             capped and f"{capped} point label{'s' if capped > 1 else ''} not drawn (at most {MAX_LABELS} "
             "per panel: Pareto front and published models first)"]
    return [note for note in notes if note]


def _legend(ax, groups: Sequence[Group], published_drawn: bool) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if published_drawn:  # only when hollow markers are on the axes
        handles.append(Line2D([], [], marker="o", ms=7, mfc="none", mec="0.3", mew=1.3, ls="none"))
        labels.append("published test error (hollow)")
    counts = sorted({g.n for g in groups})
    n = f"n = {counts[0]}" if len(counts) == 1 else f"n = {counts[0]}–{counts[-1]}"
    seeds = "one seed per configuration" if counts[-1] == 1 else f"mean ± std over seeds ({n})"
    ax.legend(handles, labels, loc="best", title=seeds, title_fontsize=8, framealpha=0.9)


def _scatter(ax, groups, cost, xlabel: str, higher_is_better: bool = False,
             formatter: Callable = si) -> list[int]:
    """Mean markers with ±std bars, a colour and marker per family; the Pareto front, drawn and returned."""
    for family in sorted({g.family for g in groups}, key=lambda f: (family_rank(f), f)):
        style, members = family_style(family), [g for g in groups if g.family == family]
        ax.errorbar([cost(g) for g in members], [g.error_mean for g in members], fmt=style.marker,
                    yerr=[g.error_std for g in members], color=style.color, mec="white", mew=0.6, zorder=3,
                    ms=MARKER_SIZE, ecolor=style.color, elinewidth=1.1, capsize=2.5, label=style.label)
    xs, ys = [cost(g) for g in groups], [g.error_mean for g in groups]
    front = pareto_front([(-x if higher_is_better else x, y) for x, y in zip(xs, ys)])
    if len(front) > 1:
        # Post steps: the best error reachable within a budget holds until the next front point,
        # drawn as explicit corners, not ax.step, so label placement sees the path it avoids.
        step_x = [x for i, j in zip(front, front[1:]) for x in (xs[i], xs[j])] + [xs[front[-1]]]
        step_y = [y for i in front[:-1] for y in (ys[i], ys[i])] + [ys[front[-1]]]
        ax.plot(step_x, step_y, color="0.35", ls=(0, (4, 2)), lw=1.1, zorder=2, label="Pareto front")
    # Log x labelled at 1-2-5 steps: plain '2M' reads faster than '2x10^6'.
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(formatter))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.margins(x=0.1, y=0.12)
    ax.set(xlabel=xlabel, ylabel=error_label(groups))
    return front


def _label_points(ax, groups, cost, front: list[int], extra_labels: Sequence[PointLabel] = (),
                  extra_points=()) -> tuple[int, int]:
    """Name the points once the layout is final: the Pareto front, then published models, then
    the rest, as later labels are the ones left out where it is crowded."""
    xs = np.array([cost(g) for g in groups], dtype=float)
    ys = np.array([g.error_mean for g in groups])
    published = {i for i, g in enumerate(groups) if any(
        paper.published_error(g.model, dataset, g.dropout) is not None for dataset in DATASET_NAMES)}
    first = front + sorted(published - set(front))
    rest = sorted(set(range(len(groups))) - set(first))
    named = [PointLabel(x, y, display_name(g.model, g.dropout), family_style(g.family).color)
             for x, y, g in zip(xs, ys, groups)]
    labels = [*(named[i] for i in first), *extra_labels, *(named[i] for i in rest)]
    stds = np.array([g.error_std for g in groups])
    low, high = (ax.transData.transform(np.column_stack([xs, ys + side * stds])) for side in (-1, 1))
    bars = np.column_stack([low[:, 0] - 3, low[:, 1], low[:, 0] + 3, high[:, 1]])  # over the ±std bars
    obstacles = [point_boxes(ax, xs, ys), bars]
    if extra_points:
        obstacles.append(point_boxes(ax, *zip(*extra_points)))
    if ax.get_legend() is not None:
        legend = ax.get_legend().get_window_extent(ax.figure.canvas.get_renderer())
        obstacles.append(np.array([legend.extents]))
    return place_labels(ax, labels, np.vstack(obstacles))


def freeze_layout(fig, axes) -> None:
    """Fix axes positions and limits so label placement measures what will be saved."""
    fig.tight_layout()
    for ax in axes:
        ax.set(xlim=ax.get_xlim(), ylim=ax.get_ylim())


def _error_vs_cost(groups, options: PlotOptions, cost, xlabel: str, what: str, published_x) -> Drawing | None:
    drawn = [g for g in groups if finite(cost(g))]
    if not drawn:
        return None
    fig, (ax,) = new_figure()
    front = _scatter(ax, drawn, cost, xlabel)
    paper_labels, paper_points, notes = [], [], []
    if options.with_paper:
        # Hollow published points, dotted to our matching configuration, else labelled '(paper)'.
        ours = {(g.model.lower(), round(g.dropout, 9)): g for g in drawn}
        for entry in paper.published_results(options.dataset):
            x = published_x(entry)
            if not finite(x):
                continue
            style = family_style(family_of_model(entry.model))
            ax.plot([x], [entry.error], marker=style.marker, ms=7.5, mfc="none", mec=style.color,
                    mew=1.4, ls="none", zorder=4)
            paper_points.append((x, entry.error))
            match = ours.get((entry.model, round(entry.dropout, 9)))
            if match is not None:
                ax.plot([cost(match), x], [match.error_mean, entry.error],
                        ls=":", lw=1.0, color=style.color, alpha=0.7, zorder=2)
            else:
                name = display_name(entry.model, entry.dropout) + " (paper)"
                paper_labels.append(PointLabel(x, entry.error, name, style.color, italic=True))
        if not paper_points:
            notes.append(f"no published {options.dataset_name} model has a known {xlabel}; none drawn")
    split = error_split(drawn)
    if paper_points and split != "test":  # say so: two splits share this axis
        ax.set_ylabel(f"error (%): ours {split}, published test")
    ax.set_title(options.title(f"{split} error vs {what}"))
    _legend(ax, drawn, bool(paper_points))
    freeze_layout(fig, [ax])
    placement = _label_points(ax, drawn, cost, front, extra_labels=paper_labels, extra_points=paper_points)
    return Drawing(fig, notes + placement_notes([placement]))


def plot_error_vs_params(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    return _error_vs_cost(groups, options, lambda g: g.params, "parameters", "parameters",
                          published_x=lambda entry: entry.params)


def plot_error_vs_macs(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    # Papers give no fvcore counts; an architecture's MACs do not depend on the run, so a
    # published model is placed at the MACs this sweep measured for it (skipped if unmeasured).
    macs = {g.model: g.macs for g in groups if finite(g.macs)}
    return _error_vs_cost(groups, options, lambda g: g.macs, "multiply-adds per image (MACs, fvcore)",
                          "compute per image", published_x=lambda entry: macs.get(entry.model))


def plot_error_vs_time(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    timed = [g for g in groups if finite(g.wall_seconds)]
    if not timed:
        return None
    longest = max(g.wall_seconds for g in timed)
    scale, unit = ((3600.0, "hours") if longest >= 2 * 3600
                   else (60.0, "minutes") if longest >= 120 else (1.0, "seconds"))
    fast = [g for g in timed if finite(g.images_per_sec)]
    fig, axes = new_figure(width=10.0 if fast else 7.0, ncols=2 if fast else 1, sharey=True)
    # Time ticks read "0.5" hours, not "500m".
    panels = [(axes[0], timed, lambda g: g.wall_seconds / scale, f"training wall time ({unit})", False,
               lambda value, _pos=None: f"{value:g}")]
    if fast:
        panels.append((axes[1], fast, lambda g: g.images_per_sec, "training throughput (images/s)", True, si))
    fronts = [_scatter(*panel) for panel in panels]
    devices = sorted({r.device for g in timed for r in g.runs if r.device})
    where = (f" on {devices[0]}" if len(devices) == 1
             else " (mixed devices: times not comparable)" if devices else "")
    fig.suptitle(options.title(f"{error_split(timed)} error vs training cost{where}"), size=11)
    axes[-1].yaxis.set_tick_params(labelleft=True)
    _legend(axes[0], timed, False)
    freeze_layout(fig, axes)
    placements = [_label_points(ax, members, cost, front)
                  for (ax, members, cost, *_), front in zip(panels, fronts)]
    return Drawing(fig, placement_notes(placements))
