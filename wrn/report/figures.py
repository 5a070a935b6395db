"""What every figure shares (the rc style, a colour, marker and line style per family, the options,
the canvas), point labels placed without overlaps, and error against parameters, multiply-adds
(MACs) and training cost with the Pareto front. Several sources share the axes, told apart by the
fill of their markers and the dashes of their fronts. Where adjacent front points lie within each
other's ±std, their seeds are drawn too."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from wrn.report import paper
from wrn.report.results import (DATASET_NAMES, Group, Run, display_name, error_label, error_split,
                                family_of_model, family_rank, finite, pareto_front)
from wrn.report.text import si

STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
         "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "axes.grid.which": "major",
         "grid.alpha": 0.35, "grid.linewidth": 0.6, "axes.spines.top": False,
         "axes.spines.right": False, "svg.hashsalt": "wrn", "savefig.dpi": 150}
MARKER_SIZE = 6.5  # points
SEED_OFFSET = 1.07  # x factor (log axes): a seed's point lies just right of its mean
SEEDS_LABEL = "seeds (where the front's order is uncertain)"
MAX_LABELS = 30  # per axes; the labels past it (least important first) are not drawn
LABEL_SIZE = 7.5
# Offsets in points, nearest first; the first that overlaps nothing wins. Past the first ring a
# thin leader line ties the label to its point.
_DIRECTIONS = ((5, 4), (5, -4), (-5, 4), (-5, -4), (0, 7), (0, -7), (7, 0), (-7, 0))
_OFFSETS = np.array([(dx * r, dy * r) for r in (1.0, 1.8, 2.7, 3.6, 4.5) for dx, dy in _DIRECTIONS])


@dataclass(frozen=True)
class FamilyStyle:
    label: str
    color: str
    marker: str
    linestyle: str | tuple  # marks the family in the curves, as the marker does elsewhere


# Okabe-Ito colours (colour-blind safe), one per family in every figure.
FAMILY_STYLES = {
    "wrn": FamilyStyle("Wide ResNet", "#0072B2", "o", "-"),
    "resnet": FamilyStyle("ResNet", "#D55E00", "s", "--"),
    "preact-resnet": FamilyStyle("pre-act ResNet", "#CC79A7", "^", "-."),
    "plain": FamilyStyle("plain (no shortcuts)", "#666666", "D", ":"),
}


def family_style(family: str) -> FamilyStyle:
    return FAMILY_STYLES.get(family, FamilyStyle(family or "other", "#009E73", "v", (0, (1, 2))))


# Several sources on one axes: the fill of the markers (hollow is for published numbers) and the
# dashes of their Pareto fronts and curves tell them apart, in the order given.
SOURCE_FILLS = ("full", "left", "bottom", "right", "top")
SOURCE_LINES = ((0, (4, 2)), (0, (1, 1.5)), (0, (7, 2, 1, 2)), (0, (2, 3)), (0, (10, 3)))


def source_style(index: int) -> tuple[str, tuple]:
    return SOURCE_FILLS[index % len(SOURCE_FILLS)], SOURCE_LINES[index % len(SOURCE_LINES)]


def new_figure(width: float = 7.5, height: float = 5.0, ncols: int = 1, layout: str | None = None, **kwargs):
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False, **kwargs)[0]


@dataclass(frozen=True)
class PlotOptions:
    dataset: str = "cifar10"
    with_paper: bool = False
    about: str = ""  # what the runs were, e.g. "300 images per class, 6 epochs"
    sources: tuple[str, ...] = ()  # the labels of the sources, in order

    @property
    def dataset_name(self) -> str:
        return DATASET_NAMES.get(self.dataset, self.dataset)

    @property
    def several_sources(self) -> bool:
        return len(self.sources) > 1

    def source_index(self, group: Group) -> int:
        return self.sources.index(group.source) if group.source in self.sources else 0

    def title(self, what: str) -> str:
        return f"{self.dataset_name}: {what}" + (f"\n{self.about}" if self.about else "")


@dataclass(frozen=True)
class CostAxis:
    """What a panel puts on x: a configuration at the median of its seeds' costs (`ranged`: with a
    bar from the lowest to the highest, each seed at its own cost)."""

    label: str
    run_cost: Callable[[Run], float | None]
    ranged: bool = False
    higher_is_better: bool = False
    formatter: Callable = si

    def costs(self, group: Group) -> list[float]:
        return [cost for run in group.runs if finite(cost := self.run_cost(run))]

    def cost(self, group: Group) -> float | None:
        return float(np.median(costs)) if (costs := self.costs(group)) else None


@dataclass
class Drawing:
    figure: Figure
    notes: list[str] = field(default_factory=list)  # for the command to print, not drawn


@dataclass(frozen=True)
class PointLabel:
    x: float
    y: float
    text: str
    color: str
    italic: bool = False


def point_boxes(ax, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    radius = MARKER_SIZE / 2 * ax.figure.dpi / 72 + 1
    centres = ax.transData.transform(np.column_stack([xs, ys]))
    return np.hstack([centres - radius, centres + radius])


def marker_boxes(ax) -> np.ndarray:
    """Boxes around every marker on the axes: points, seeds, published numbers, bar caps."""
    lines = [line.get_xydata() for line in ax.get_lines()
             if line.get_marker() not in (None, "None", "", " ") and len(line.get_xydata())]
    return point_boxes(ax, *np.vstack(lines).T) if lines else np.empty((0, 4))


def _overlaps(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each of `boxes` (m, 4), the total area covered by `others` (n, 4): shape (m,)."""
    sides = (np.minimum(boxes[:, None, 2:], others[None, :, 2:])
             - np.maximum(boxes[:, None, :2], others[None, :, :2]))
    return np.clip(sides, 0, None).prod(axis=2).sum(axis=1)


def line_boxes(ax, step: float = 8.0) -> np.ndarray:
    """Small boxes along every drawn line (Pareto steps, paper connectors): labels avoid them."""
    boxes = []
    for line in ax.get_lines():
        if line.get_linestyle() in ("None", "", " ") or len(line.get_xydata()) < 2:
            continue
        points = ax.transData.transform(line.get_xydata())
        for start, end in zip(points[:-1], points[1:]):
            pieces = max(int(np.hypot(*(end - start)) // step), 1)
            ends = start + np.outer(np.linspace(0, 1, pieces + 1), end - start)
            a, b = ends[:-1], ends[1:]
            boxes.append(np.hstack([np.minimum(a, b) - 1.5, np.maximum(a, b) + 1.5]))
    return np.vstack(boxes) if boxes else np.empty((0, 4))


def _annotate(ax, label: PointLabel, dx: float, dy: float, leader: bool = False):
    arrow = dict(arrowstyle="-", color=label.color, lw=0.6, alpha=0.6, shrinkA=1, shrinkB=4)
    return ax.annotate(label.text, (label.x, label.y), xytext=(dx, dy), textcoords="offset points", zorder=5,
                       fontsize=LABEL_SIZE, color=label.color, style="italic" if label.italic else "normal",
                       ha="left" if dx > 0 else "right" if dx < 0 else "center",
                       va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                       arrowprops=arrow if leader else None)


def place_labels(ax, labels: Sequence[PointLabel], obstacles: np.ndarray) -> tuple[int, int]:
    """The first MAX_LABELS (most important first), each at the nearest free offset inside the axes;
    one that can only overlap text or markers is left out. Returns (left out, past MAX_LABELS)."""
    renderer = ax.figure.canvas.get_renderer()
    shown = labels[:MAX_LABELS]
    hard = np.vstack([obstacles, point_boxes(ax, [lab.x for lab in shown], [lab.y for lab in shown])])
    soft = line_boxes(ax)
    inside = np.array(ax.get_window_extent(renderer).extents)
    crowded = 0
    for label in shown:
        probe = _annotate(ax, label, *_OFFSETS[0])  # text layout is the slow part: measured once
        size = np.array([probe.get_window_extent(renderer).size])
        probe.remove()
        anchor = ax.transData.transform((label.x, label.y)) + _OFFSETS * ax.figure.dpi / 72
        # Lower left corners, aligned as _annotate aligns the text; 2 pixels of air around each box.
        corner = anchor - size * (1 - np.sign(_OFFSETS)) / 2
        boxes = np.hstack([corner - 2, corner + size + 2])
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        # Outside the axes costs ten times a hard obstacle (markers, bars, legend, labels); soft
        # ones (lines) cost a quarter and never exclude. Nearest offset first among equals.
        hard_overlap = _overlaps(boxes, hard) + 10 * (areas - _overlaps(boxes, inside[None]))
        best = int(np.argmin(hard_overlap + 0.25 * _overlaps(boxes, soft)))
        if hard_overlap[best] > 0.03 * areas[best]:
            crowded += 1
            continue
        _annotate(ax, label, *_OFFSETS[best], leader=best >= len(_DIRECTIONS))  # past the first ring
        hard = np.vstack([hard, boxes[best]])
    return crowded, len(labels) - len(shown)


def placement_notes(placements: Sequence[tuple[int, int]]) -> list[str]:
    crowded, capped = map(sum, zip(*placements))
    notes = [crowded and f"{crowded} crowded label{'s' if crowded > 1 else ''} left out",
             capped and f"{capped} point label{'s' if capped > 1 else ''} not drawn (at most {MAX_LABELS} "
             "per panel: Pareto front and published models first)"]
    return [note for note in notes if note]


def _legend(ax, groups: Sequence[Group], published_drawn: bool, options: PlotOptions) -> None:
    """The families (filled markers whatever the source), the lines drawn, then what tells apart
    published numbers and sources."""
    styles = [family_style(f) for f in sorted({g.family for g in groups}, key=lambda f: (family_rank(f), f))]
    drawn, named = ax.get_legend_handles_labels()
    handles = [*(Line2D([], [], marker=s.marker, color=s.color, mec="white", ms=MARKER_SIZE, ls="none")
                 for s in styles), *drawn]
    labels = [*(s.label for s in styles), *named]
    if published_drawn:  # only when hollow markers are on the axes
        handles.append(Line2D([], [], marker="o", ms=7, mfc="none", mec="0.3", mew=1.3, ls="none"))
        labels.append("published test error (hollow)")
    for index, source in enumerate(options.sources if options.several_sources else ()):
        fill, dashes = source_style(index)
        handles.append(Line2D([], [], marker="o", color="0.35", fillstyle=fill, mfcalt="white", ls=dashes))
        labels.append(source)
    counts = sorted({g.n for g in groups})
    n = f"n = {counts[0]}" if len(counts) == 1 else f"n = {counts[0]}–{counts[-1]}"
    title = "one seed per configuration" if counts[-1] == 1 else f"mean ± std over seeds ({n})"
    title += "\nfill and Pareto-front dashes mark the source" if options.several_sources else ""
    ax.legend(handles, labels, loc="best", title=title, title_fontsize=8, framealpha=0.9)


def _points(ax, groups: Sequence[Group], axis: CostAxis, options: PlotOptions) -> None:
    """Mean markers with ±std bars (ranged: and the seeds' cost range)."""
    for index, family in sorted({(options.source_index(g), g.family) for g in groups},
                                key=lambda key: (key[0], family_rank(key[1]), key[1])):
        members = [g for g in groups if (options.source_index(g), g.family) == (index, family)]
        style, (fill, _) = family_style(family), source_style(index)
        costs = np.array([axis.cost(g) for g in members])
        spread = np.abs([[min(axis.costs(g)), max(axis.costs(g))] for g in members] - costs[:, None]).T
        ax.errorbar(costs, [g.error_mean for g in members], yerr=[g.error_std for g in members],
                    xerr=spread if axis.ranged else None, fmt=style.marker, color=style.color,
                    fillstyle=fill, mfcalt="white", mec="white" if fill == "full" else style.color,
                    mew=0.6 if fill == "full" else 1.0, ms=MARKER_SIZE, ecolor=style.color, elinewidth=1.1,
                    capsize=2.5, zorder=3)


def _seeds(ax, g: Group, axis: CostAxis) -> None:
    """Each seed's own point, small and faint: at its own cost (ranged), else just right of its mean."""
    runs = [run for run in g.runs if finite(axis.run_cost(run))]
    xs = [axis.run_cost(run) if axis.ranged else axis.cost(g) * SEED_OFFSET for run in runs]
    seen = SEEDS_LABEL in ax.get_legend_handles_labels()[1]
    style = family_style(g.family)
    ax.plot(xs, [100.0 * (1.0 - getattr(run, g.metric)) for run in runs], marker=style.marker, ms=3.2,
            ls="none", color=style.color, alpha=0.45, zorder=2.5, label=None if seen else SEEDS_LABEL)


def _front(ax, groups: Sequence[Group], axis: CostAxis, options: PlotOptions) -> tuple[list[int], list[str]]:
    """Each source's Pareto front, drawn: its points (indices into groups), and notes where
    adjacent ones lie within each other's ±std (their seeds drawn too: the order is uncertain)."""
    xs, ys = [axis.cost(g) for g in groups], [g.error_mean for g in groups]
    fronts, notes = [], []
    for index in sorted({options.source_index(g) for g in groups}):
        members = [i for i, g in enumerate(groups) if options.source_index(g) == index]
        front = [members[k] for k in pareto_front([(-xs[i] if axis.higher_is_better else xs[i], ys[i])
                                                   for i in members])]
        fronts += front
        if len(front) > 1:
            # Post steps: the best error reachable within a budget holds until the next front point,
            # drawn as explicit corners, not ax.step, so label placement sees the path it avoids.
            step_x = [x for i, j in zip(front, front[1:]) for x in (xs[i], xs[j])] + [xs[front[-1]]]
            step_y = [y for i in front[:-1] for y in (ys[i], ys[i])] + [ys[front[-1]]]
            ax.plot(step_x, step_y, color="0.35", ls=source_style(index)[1], lw=1.1, zorder=2,
                    label=None if options.several_sources else "Pareto front")
        uncertain = list(dict.fromkeys(k for i, j in zip(front, front[1:]) for k in (i, j) if 0 < (
            both := groups[i].error_std + groups[j].error_std) and abs(ys[i] - ys[j]) <= both))
        for i in uncertain:
            _seeds(ax, groups[i], axis)
        names = ", ".join(display_name(groups[i].model, groups[i].dropout) for i in uncertain)
        where = f" of {options.sources[index]}" if options.several_sources else ""
        notes += [f"Pareto front{where}: adjacent points of {names} lie within each other's ±std, so "
                  "their order is uncertain; each seed is drawn too"] if uncertain else []
    return fronts, notes


def _scatter(ax, groups: Sequence[Group], axis: CostAxis, options: PlotOptions) -> tuple[list[int], list]:
    _points(ax, groups, axis, options)
    front, notes = _front(ax, groups, axis, options)
    # Log x labelled at 1-2-5 steps: plain '2M' reads faster than '2x10^6'.
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(axis.formatter))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.margins(x=0.1, y=0.12)
    ax.set(xlabel=axis.label, ylabel=error_label(groups))
    return front, notes


def _label_points(ax, groups, axis: CostAxis, front: list[int],
                  extra_labels: Sequence[PointLabel] = ()) -> tuple[int, int]:
    """Name the points once the layout is final: the Pareto front, then published models, then
    the rest, as later labels are the ones left out where it is crowded."""
    xs = np.array([axis.cost(g) for g in groups], dtype=float)
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
    bars = [np.column_stack([low[:, 0] - 3, low[:, 1], low[:, 0] + 3, high[:, 1]])]  # over the ±std bars
    if axis.ranged:  # and over the seeds' cost ranges
        left, right = (ax.transData.transform(np.column_stack([[end(axis.costs(g)) for g in groups], ys]))
                       for end in (min, max))
        bars.append(np.column_stack([left[:, 0], left[:, 1] - 3, right[:, 0], right[:, 1] + 3]))
    if ax.get_legend() is not None:
        bars.append(np.array([ax.get_legend().get_window_extent(ax.figure.canvas.get_renderer()).extents]))
    return place_labels(ax, labels, np.vstack([marker_boxes(ax), *bars]))


def freeze_layout(fig, axes) -> None:
    """Fix axes positions and limits so label placement measures what will be saved."""
    fig.tight_layout()
    for ax in axes:
        ax.set(xlim=ax.get_xlim(), ylim=ax.get_ylim())


def _published(ax, drawn: Sequence[Group], axis: CostAxis, options: PlotOptions,
               published_x) -> tuple[list[PointLabel], int]:
    """Hollow published points, dotted to our matching configurations, else labelled '(paper)':
    (those labels, how many points were drawn)."""
    labels, count = [], 0
    for entry in paper.published_results(options.dataset):
        if not finite(x := published_x(entry)):
            continue
        style, count = family_style(family_of_model(entry.model)), count + 1
        ax.plot([x], [entry.error], marker=style.marker, ms=7.5, mfc="none", mec=style.color,
                mew=1.4, ls="none", zorder=4)
        matches = [g for g in drawn if (g.model.lower(), g.dropout) == (entry.model, entry.dropout)]
        for match in matches:
            ax.plot([axis.cost(match), x], [match.error_mean, entry.error],
                    ls=":", lw=1.0, color=style.color, alpha=0.7, zorder=2)
        if not matches:
            name = display_name(entry.model, entry.dropout) + " (paper)"
            labels.append(PointLabel(x, entry.error, name, style.color, italic=True))
    return labels, count


def _error_vs_cost(groups, options: PlotOptions, axis: CostAxis, what: str, published_x) -> Drawing | None:
    drawn = [g for g in groups if axis.costs(g)]
    if not drawn:
        return None
    fig, (ax,) = new_figure()
    front, notes = _scatter(ax, drawn, axis, options)
    paper_labels, published = (_published(ax, drawn, axis, options, published_x)
                               if options.with_paper else ([], 0))
    if options.with_paper and not published:
        notes.append(f"no published {options.dataset_name} model has a known {axis.label}; none drawn")
    split = error_split(drawn)
    if published and split != "test":  # say so: two splits share this axis
        ax.set_ylabel(f"error (%): ours {split}, published test")
    ax.set_title(options.title(f"{split} error vs {what}"))
    _legend(ax, drawn, published > 0, options)
    freeze_layout(fig, [ax])
    placement = _label_points(ax, drawn, axis, front, extra_labels=paper_labels)
    return Drawing(fig, notes + placement_notes([placement]))


def plot_error_vs_params(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    return _error_vs_cost(groups, options, CostAxis("parameters", lambda r: r.params), "parameters",
                          published_x=lambda entry: entry.params)


def plot_error_vs_macs(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    # Papers give no fvcore counts; an architecture's MACs do not depend on the run, so a
    # published model is placed at the MACs this sweep measured for it (skipped if unmeasured).
    macs = {g.model: g.macs for g in groups if finite(g.macs)}
    axis = CostAxis("multiply-adds per image (MACs, fvcore)", lambda r: r.macs)
    return _error_vs_cost(groups, options, axis, "compute per image", lambda entry: macs.get(entry.model))


def plot_error_vs_time(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    """Each configuration at the median of its seeds' wall time and images/s (a shared machine
    makes one run's speed a poor guide), a bar from the slowest seed to the fastest."""
    longest = max([r.wall_seconds for g in groups for r in g.runs if finite(r.wall_seconds)], default=None)
    if longest is None:
        return None
    scale, unit = ((3600.0, "hours") if longest >= 2 * 3600
                   else (60.0, "minutes") if longest >= 120 else (1.0, "seconds"))
    # Time ticks read "0.5" hours, not "500m".
    wall = CostAxis(f"training wall time ({unit}), median of seeds", ranged=True,
                    run_cost=lambda r: (r.wall_seconds or math.nan) / scale,
                    formatter=lambda value, _pos=None: f"{value:g}")
    speed = CostAxis("training throughput (images/s), median of seeds", lambda r: r.images_per_sec,
                     ranged=True, higher_is_better=True)
    panels = [(axis, members) for axis in (wall, speed) if (members := [g for g in groups if axis.costs(g)])]
    fig, axes = new_figure(width=3.0 + 3.5 * len(panels), ncols=len(panels), sharey=True)
    scattered = [_scatter(ax, members, axis, options) for ax, (axis, members) in zip(axes, panels)]
    devices = sorted({r.device for g in panels[0][1] for r in g.runs if r.device})
    where = (f" on {devices[0]}" if len(devices) == 1
             else " (mixed devices: times not comparable)" if devices else "")
    fig.suptitle(options.title(f"{error_split(panels[0][1])} error vs training cost{where}; "
                               "horizontal bars: slowest to fastest seed"), size=11)
    axes[-1].yaxis.set_tick_params(labelleft=True)
    _legend(axes[0], panels[0][1], False, options)
    freeze_layout(fig, axes)
    placements = [_label_points(ax, members, axis, front)
                  for ax, (axis, members), (front, _) in zip(axes, panels, scattered)]
    notes = [f"{panel}: {note}" for panel, (_, own) in zip(("wall time", "throughput"), scattered)
             for note in own]
    return Drawing(fig, notes + placement_notes(placements))
