"""Error against parameters, FLOPs and training cost: mean ± std per configuration, the Pareto
front, labelled points and, with --paper, the published numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from wrn.report import paper
from wrn.report.labels import (MAX_LABELS, Placement, PointLabel, bar_boxes, bbox_array,
                               place_labels, point_boxes)
from wrn.report.results import (Group, error_label, error_split, family_rank, finite,
                                pareto_front)
from wrn.report.names import DATASET_NAMES, display_name, family_of_model
from wrn.report.styles import MARKER_SIZE, family_style, log_x, new_figure, plain
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
    """A finished figure and what the command should say about it (not drawn in it)."""

    figure: Figure
    notes: list[str] = field(default_factory=list)


def placement_notes(placements: Sequence[Placement]) -> list[str]:
    crowded = sum(p.crowded for p in placements)
    capped = sum(p.capped for p in placements)
    notes = [f"{crowded} crowded label{'s' if crowded > 1 else ''} left out"] if crowded else []
    if capped:
        notes.append(f"{capped} point label{'s' if capped > 1 else ''} not drawn "
                     f"(at most {MAX_LABELS} per panel: Pareto front and published models first)")
    return notes


def by_family(groups: Sequence[Group]) -> list[tuple[str, list[Group]]]:
    families = sorted({g.family for g in groups}, key=lambda f: (family_rank(f), f))
    return [(f, [g for g in groups if g.family == f]) for f in families]


def _draw_groups(ax, groups: Sequence[Group], cost: Callable[[Group], float | None]) -> None:
    """Mean markers with ±std bars, one colour and marker per family."""
    for family, members in by_family(groups):
        style = family_style(family)
        ax.errorbar([cost(g) for g in members], [g.error_mean for g in members],
                    yerr=[g.error_std for g in members], fmt=style.marker, color=style.color,
                    ms=MARKER_SIZE, mec="white", mew=0.6, ecolor=style.color, elinewidth=1.1,
                    capsize=2.5, label=style.label, zorder=3)


def _draw_pareto(ax, xs: Sequence[float], ys: Sequence[float], higher_is_better: bool = False) -> None:
    costs = [-x if higher_is_better else x for x in xs]
    front = pareto_front(list(zip(costs, ys)))
    if len(front) < 2:
        return
    # Post steps: the best error reachable within a budget holds until the next front point.
    # Drawn as explicit corners, not ax.step, so label placement sees the path it avoids.
    step_x = [x for i, j in zip(front, front[1:]) for x in (xs[i], xs[j])] + [xs[front[-1]]]
    step_y = [y for i in front[:-1] for y in (ys[i], ys[i])] + [ys[front[-1]]]
    ax.plot(step_x, step_y, color="0.35", ls=(0, (4, 2)), lw=1.1, zorder=2, label="Pareto front")


def _seed_note(groups: Sequence[Group]) -> str:
    counts = sorted({g.n for g in groups})
    if counts[-1] == 1:
        return "one seed per configuration"
    n = f"n = {counts[0]}" if len(counts) == 1 else f"n = {counts[0]}–{counts[-1]}"
    return f"mean ± std over seeds ({n})"


def _plot_published(ax, groups, options: PlotOptions, x_of, cost):
    """Hollow published points, a dotted line to the matching reproduction when there is one;
    only unmatched published points get a '(paper)' label, matched ones are read via the line.
    Returns (labels, [(x, error)] of every published point drawn)."""
    labels, points = [], []
    ours = {(g.model.lower(), round(g.dropout, 9)): g for g in groups}
    for entry in paper.published_results(options.dataset):
        x = x_of(entry)
        if not finite(x):
            continue
        style = family_style(family_of_model(entry.model))
        ax.plot([x], [entry.error], marker=style.marker, ms=7.5, mfc="none", mec=style.color,
                mew=1.4, ls="none", zorder=4)
        points.append((x, entry.error))
        match = ours.get((entry.model, round(entry.dropout, 9)))
        if match is not None:
            ax.plot([cost(match), x], [match.error_mean, entry.error],
                    ls=":", lw=1.0, color=style.color, alpha=0.7, zorder=2)
        else:
            name = display_name(entry.model, entry.dropout) + " (paper)"
            labels.append(PointLabel(x, entry.error, name, style.color, italic=True))
    return labels, points


def _published_at_measured_flops(groups: Sequence[Group]):
    # Papers give no fvcore FLOPs; an architecture's FLOPs do not depend on the run, so a
    # published model is placed at the FLOPs this sweep measured for it (skipped if unmeasured).
    flops = {g.model: g.flops for g in groups if finite(g.flops)}
    return lambda entry: flops.get(entry.model)


def _legend(ax, groups: Sequence[Group], published_drawn: bool, loc: str = "best") -> None:
    handles, labels = ax.get_legend_handles_labels()
    if published_drawn:  # only when hollow markers are on the axes
        handles.append(Line2D([], [], marker="o", ms=7, mfc="none", mec="0.3", mew=1.3, ls="none"))
        labels.append("published test error (hollow)")
    ax.legend(handles, labels, loc=loc, title=_seed_note(groups), title_fontsize=8,
              framealpha=0.9)


def _y_label(groups: Sequence[Group], published_drawn: bool) -> str:
    split = error_split(groups)
    if published_drawn and split != "test":  # say so: two splits share this axis
        return f"error (%): ours {split}, published test"
    return error_label(groups)


def _scatter(ax, groups, cost, xlabel: str, higher_is_better: bool = False,
             formatter: Callable = si) -> None:
    _draw_groups(ax, groups, cost)
    _draw_pareto(ax, [cost(g) for g in groups], [g.error_mean for g in groups], higher_is_better)
    log_x(ax, formatter)
    ax.margins(x=0.1, y=0.12)
    ax.set(xlabel=xlabel, ylabel=error_label(groups))


def _is_published(group: Group) -> bool:
    return any(paper.published_entry(group.model, dataset, group.dropout) for dataset in DATASET_NAMES)


def _label_points(ax, groups, cost, higher_is_better: bool = False,
                  extra_labels: Sequence[PointLabel] = (), extra_points=()) -> Placement:
    """Name the points once the layout is final. Where it is crowded, later labels are the ones
    left out, so the order is: Pareto-optimal points, published configurations, the rest."""
    xs = np.array([cost(g) for g in groups], dtype=float)
    ys = np.array([g.error_mean for g in groups])
    front = pareto_front(list(zip(-xs if higher_is_better else xs, ys)))
    on_front = set(front)
    famous = [i for i, g in enumerate(groups) if i not in on_front and _is_published(g)]
    seen = on_front | set(famous)
    order = front + famous
    labels = [PointLabel(xs[i], ys[i], display_name(groups[i].model, groups[i].dropout),
                         family_style(groups[i].family).color) for i in order]
    labels += list(extra_labels)
    labels += [PointLabel(xs[i], ys[i], display_name(g.model, g.dropout), family_style(g.family).color)
               for i, g in enumerate(groups) if i not in seen]
    stds = np.array([g.error_std for g in groups])
    obstacles = [point_boxes(ax, xs, ys), bar_boxes(ax, xs, ys - stds, ys + stds)]
    if extra_points:
        obstacles.append(point_boxes(ax, *zip(*extra_points)))
    if ax.get_legend() is not None:
        obstacles.append(bbox_array([ax.get_legend().get_window_extent(ax.figure.canvas.get_renderer())]))
    return place_labels(ax, labels, np.vstack(obstacles))


def freeze_layout(fig, axes) -> None:
    """Fix axes positions and limits so label placement measures what will be saved."""
    fig.tight_layout()
    for ax in axes:
        ax.set_xlim(ax.get_xlim())
        ax.set_ylim(ax.get_ylim())


def _error_vs_cost(groups, options: PlotOptions, cost, xlabel: str, what: str,
                   published_x=None) -> Drawing | None:
    drawn = [g for g in groups if finite(cost(g))]
    if not drawn:
        return None
    fig, (ax,) = new_figure()
    _scatter(ax, drawn, cost, xlabel)
    paper_labels, paper_points, notes = [], [], []
    if options.with_paper and published_x is not None:
        paper_labels, paper_points = _plot_published(ax, drawn, options, published_x, cost)
        if not paper_points:
            notes.append(f"no published {options.dataset_name} model has a known {xlabel}; "
                         "none drawn")
    ax.set_ylabel(_y_label(drawn, bool(paper_points)))
    ax.set_title(options.title(f"{error_split(drawn)} error vs {what}"))
    _legend(ax, drawn, bool(paper_points))
    freeze_layout(fig, [ax])
    placement = _label_points(ax, drawn, cost, extra_labels=paper_labels, extra_points=paper_points)
    return Drawing(fig, notes + placement_notes([placement]))


def plot_error_vs_params(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    return _error_vs_cost(groups, options, lambda g: g.params, "parameters", "parameters",
                          published_x=lambda entry: entry.params)


def plot_error_vs_flops(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    return _error_vs_cost(groups, options, lambda g: g.flops, "multiply-adds (fvcore FLOPs)",
                          "compute per image", published_x=_published_at_measured_flops(groups))


# ----------------------------------------------------------------------------- training cost


def _time_unit(seconds: Sequence[float]) -> tuple[float, str]:
    longest = max(seconds)
    if longest >= 2 * 3600:
        return 3600.0, "hours"
    if longest >= 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


def _device_note(groups: Sequence[Group]) -> str:
    devices = sorted({r.device for g in groups for r in g.runs if r.device})
    if len(devices) == 1:
        return f" on {devices[0]}"
    return " (mixed devices: times not comparable)" if devices else ""


def plot_error_vs_time(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    timed = [g for g in groups if finite(g.wall_seconds)]
    if not timed:
        return None
    scale, unit = _time_unit([g.wall_seconds for g in timed])
    fast = [g for g in timed if finite(g.images_per_sec)]
    fig, axes = new_figure(width=10.0 if fast else 7.0, ncols=2 if fast else 1, sharey=True)
    wall_time = lambda g: g.wall_seconds / scale  # noqa: E731
    panels = [(axes[0], timed, wall_time, f"training wall time ({unit})", False, plain)]
    if fast:
        panels.append((axes[1], fast, lambda g: g.images_per_sec, "training throughput (images/s)",
                       True, si))
    for ax, members, cost, xlabel, higher_is_better, formatter in panels:
        _scatter(ax, members, cost, xlabel, higher_is_better, formatter)
    fig.suptitle(options.title(f"{error_split(timed)} error vs training cost{_device_note(timed)}"),
                 size=11)
    axes[-1].yaxis.set_tick_params(labelleft=True)
    _legend(axes[0], timed, False)
    freeze_layout(fig, axes)
    placements = [_label_points(ax, members, cost, higher_is_better)
                  for ax, members, cost, _, higher_is_better, _ in panels]
    return Drawing(fig, placement_notes(placements))
