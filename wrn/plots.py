"""Figures from a sweep's results.csv: error against parameters, FLOPs and training time,
a depth x width heatmap, and validation curves.

This module is also the one place that reads results files: `wrn.tables` reuses
`load_results` and `aggregate`.

    wrn plot RESULTS.csv --out DIR [--paper] [--dataset cifar10] [--formats png,svg]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import Bbox

from wrn import paper
from wrn.runs import EPOCHS_FILE, read_jsonl

REQUIRED_COLUMNS = (
    "config", "status", "model", "family", "depth", "widen_factor", "dropout",
    "params", "flops", "best_val_acc",
)
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
FORMATS = ("png", "svg", "pdf")
# Baselines first and WRN last, as in the WRN paper's tables; also the legend order.
FAMILY_ORDER = ("plain", "resnet", "preact-resnet", "wrn")


class ResultsError(ValueError):
    """A results file that cannot be used: missing, lacking columns, bad numbers, no finished runs."""


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Run:
    """One finished row of results.csv, numbers parsed; None where the cell was empty."""

    config: str
    model: str
    family: str
    depth: int | None
    widen_factor: int | None
    dropout: float
    seed: str
    params: float | None
    flops: float | None
    best_val_acc: float | None
    test_acc: float | None
    wall_seconds: float | None
    images_per_sec: float | None
    device: str
    run_dir: Path | None


@dataclass(frozen=True)
class Results:
    path: Path
    runs: tuple[Run, ...]  # finished runs only
    skipped: dict[str, int]  # status -> rows left out (failed, running)


def _number(text: str | None, column: str, where: str) -> float | None:
    if text is None or text.strip().lower() in ("", "nan", "none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ResultsError(f"{where}: column {column!r} is not a number: {text!r}") from None
    return value if math.isfinite(value) else None


def _integer(text: str | None, column: str, where: str) -> int | None:
    value = _number(text, column, where)
    return None if value is None else int(value)


def read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for every data row; the header must name all REQUIRED_COLUMNS."""
    if not path.is_file():
        raise ResultsError(f"{path}: results file not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ResultsError(f"{path}: missing required column(s): {', '.join(missing)}")
        # line_num, not a counter: quoted error messages may span several lines.
        return [(reader.line_num, row) for row in reader]


def _parse_run(row: dict[str, str], where: str, base: Path) -> Run:
    def number(column: str) -> float | None:
        return _number(row.get(column), column, where)

    model = row["model"].strip()
    dropout = number("dropout") or 0.0
    run_dir = (row.get("run_dir") or "").strip()
    run = Run(
        config=row["config"].strip() or f"{model} dropout={dropout:g}",
        model=model,
        family=row["family"].strip(),
        depth=_integer(row["depth"], "depth", where),
        widen_factor=_integer(row["widen_factor"], "widen_factor", where),
        dropout=dropout,
        seed=(row.get("seed") or "").strip(),
        params=number("params"),
        flops=number("flops"),
        best_val_acc=number("best_val_acc"),
        test_acc=number("test_acc"),
        wall_seconds=number("wall_seconds"),
        images_per_sec=number("images_per_sec"),
        device=(row.get("device") or "").strip(),
        run_dir=(base / run_dir) if run_dir else None,
    )
    if run.test_acc is None and run.best_val_acc is None:
        raise ResultsError(f"{where}: finished run {model} has neither test_acc nor best_val_acc")
    return run


def load_results(path: str | Path) -> Results:
    """The finished runs of a results.csv; ResultsError when there is nothing to show."""
    path = Path(path)
    rows = read_rows(path)
    statuses = Counter(row["status"].strip() for _, row in rows)
    finished = [(line, row) for line, row in rows if row["status"].strip() == "finished"]
    if not finished:
        seen = ", ".join(f"{n} {s or 'blank'}" for s, n in statuses.items()) or "no rows"
        raise ResultsError(f"{path}: no finished runs ({seen})")
    runs = tuple(_parse_run(row, f"{path}:{line}", path.parent) for line, row in finished)
    skipped = {s: n for s, n in statuses.items() if s != "finished"}
    return Results(path, runs, skipped)


# ----------------------------------------------------------------------------- aggregation


@dataclass(frozen=True)
class Group:
    """The seeds of one configuration. Errors are %, std is the sample std (ddof=1), 0 when n=1."""

    config: str
    model: str
    family: str
    depth: int | None
    widen_factor: int | None
    dropout: float
    params: float | None
    flops: float | None
    metric: str  # "test_acc" or "best_val_acc": which accuracy the error comes from
    error_mean: float
    error_std: float
    n: int
    wall_seconds: float | None
    images_per_sec: float | None
    runs: tuple[Run, ...]


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _group_metric(config: str, runs: Sequence[Run]) -> str:
    # One metric per group: averaging test accuracy of one seed with validation of another is wrong.
    for metric in ("test_acc", "best_val_acc"):
        if all(getattr(r, metric) is not None for r in runs):
            return metric
    raise ResultsError(f"config {config!r}: its seeds do not share a test_acc or best_val_acc")


def _summarise(config: str, runs: Sequence[Run]) -> Group:
    metric = _group_metric(config, runs)
    errors = np.array([100.0 * (1.0 - getattr(r, metric)) for r in runs])
    first = runs[0]
    return Group(
        config=config, model=first.model, family=first.family, depth=first.depth,
        widen_factor=first.widen_factor, dropout=first.dropout,
        params=_mean(r.params for r in runs), flops=_mean(r.flops for r in runs),
        metric=metric, error_mean=float(errors.mean()),
        error_std=float(errors.std(ddof=1)) if len(runs) > 1 else 0.0, n=len(runs),
        wall_seconds=_mean(r.wall_seconds for r in runs),
        images_per_sec=_mean(r.images_per_sec for r in runs), runs=tuple(runs),
    )


def family_rank(family: str) -> int:
    return FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)


def aggregate(runs: Iterable[Run]) -> list[Group]:
    """One Group per `config`, sorted by family (baselines first) then parameter count."""
    by_config: dict[str, list[Run]] = {}
    for run in runs:
        by_config.setdefault(run.config, []).append(run)
    groups = [_summarise(config, members) for config, members in by_config.items()]
    inf = float("inf")
    return sorted(groups, key=lambda g: (family_rank(g.family), g.params or inf, g.config))


def error_source(groups: Sequence[Group]) -> str:
    """Which accuracy the errors come from: "test", "validation", or "mixed"."""
    metrics = {g.metric for g in groups}
    return {frozenset({"test_acc"}): "test", frozenset({"best_val_acc"}): "validation"}.get(
        frozenset(metrics), "mixed")


def error_label(groups: Sequence[Group]) -> str:
    """Axis label naming the accuracy the errors come from."""
    return {"test": "test error (%)", "validation": "best validation error (%)"}.get(
        error_source(groups), "error (%): test, or best validation where no test")


# ----------------------------------------------------------------------------- Pareto front


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, error) points that no other point beats, by increasing cost.

    A point is beaten when another has cost <= and error <= with at least one strictly lower.
    Of exact duplicates only the first index is kept (no zero-length steps); points with a
    missing or non-finite coordinate are never on the front.
    """
    usable = [i for i, (cost, error) in enumerate(points) if _finite(cost) and _finite(error)]
    front, best_error = [], math.inf
    for i in sorted(usable, key=lambda i: (points[i][0], points[i][1], i)):
        if points[i][1] < best_error:
            front.append(i)
            best_error = points[i][1]
    return front


# ----------------------------------------------------------------------------- names and styles


@dataclass(frozen=True)
class FamilyStyle:
    label: str
    color: str
    marker: str


# Okabe-Ito colours (colour-blind safe), one per family in every figure.
FAMILY_STYLES = {
    "wrn": FamilyStyle("Wide ResNet", "#0072B2", "o"),
    "resnet": FamilyStyle("ResNet", "#D55E00", "s"),
    "preact-resnet": FamilyStyle("pre-act ResNet", "#CC79A7", "^"),
    "plain": FamilyStyle("plain (no shortcuts)", "#666666", "D"),
}
_MODEL_PREFIXES = (  # longest first: "preact-resnet-" also ends in "resnet-"
    ("preact-resnet-", "preact-resnet", "pre-act ResNet-"),
    ("resnet-", "resnet", "ResNet-"),
    ("wrn-", "wrn", "WRN-"),
    ("plain-", "plain", "plain-"),
)


def family_style(family: str) -> FamilyStyle:
    return FAMILY_STYLES.get(family, FamilyStyle(family or "other", "#009E73", "v"))


def family_of_model(model: str) -> str:
    for prefix, family, _ in _MODEL_PREFIXES:
        if model.lower().startswith(prefix):
            return family
    return ""


def display_name(model: str, dropout: float = 0.0) -> str:
    """`wrn-28-10` -> `WRN-28-10`, `preact-resnet-164` -> `pre-act ResNet-164`; '+drop' if dropout."""
    name = model
    for prefix, _, shown in _MODEL_PREFIXES:
        if model.lower().startswith(prefix):
            name = shown + model[len(prefix):]
            break
    return name + ("+drop" if dropout > 0 else "")


STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "axes.grid.which": "major",
    "grid.alpha": 0.35, "grid.linewidth": 0.6, "axes.spines.top": False,
    "axes.spines.right": False, "svg.hashsalt": "wrn", "savefig.dpi": 150,
}
LABEL_SIZE = 7.5


def _si(value: float, _pos=None) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def _plain(value: float, _pos=None) -> str:
    return f"{value:g}"  # time axes: "0.5" hours, not "500m"


def _log_x(ax, formatter: Callable = _si) -> None:
    """Log x labelled at 1-2-5 steps: plain '2M' reads faster than '2x10^6'."""
    ax.set_xscale("log")
    axis = ax.xaxis
    axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(formatter))
    axis.set_minor_formatter(ticker.NullFormatter())


def _new_figure(width: float = 7.5, height: float = 5.0, ncols: int = 1, **kwargs):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False, **kwargs)[0]
    return fig, axes


# ----------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class PointLabel:
    x: float
    y: float
    text: str
    color: str
    italic: bool = False


# Offsets in points, nearest first; the first that overlaps nothing wins. Past the first ring a
# thin leader line ties the label to its point.
_DIRECTIONS = ((5, 4), (5, -4), (-5, 4), (-5, -4), (0, 7), (0, -7), (7, 0), (-7, 0))
_OFFSETS = [(dx * r, dy * r) for r in (1.0, 1.8, 2.7, 3.6, 4.5) for dx, dy in _DIRECTIONS]
MARKER_SIZE = 6.5  # points


def _overlap(a: Bbox, b: Bbox) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def _point_box(ax, x: float, y: float) -> Bbox:
    radius = MARKER_SIZE / 2 * ax.figure.dpi / 72 + 1
    px, py = ax.transData.transform((x, y))
    return Bbox.from_extents(px - radius, py - radius, px + radius, py + radius)


def _aim(artist, dx: float, dy: float) -> None:
    artist.xyann = (dx, dy)
    artist.set_horizontalalignment("left" if dx > 0 else "right" if dx < 0 else "center")
    artist.set_verticalalignment("bottom" if dy > 0 else "top" if dy < 0 else "center")


def _annotate(ax, label: PointLabel, dx: float, dy: float, leader: bool = False):
    arrow = dict(arrowstyle="-", color=label.color, lw=0.6, alpha=0.6, shrinkA=1, shrinkB=4)
    artist = ax.annotate(label.text, (label.x, label.y), xytext=(dx, dy), textcoords="offset points",
                         fontsize=LABEL_SIZE, color=label.color, zorder=5,
                         style="italic" if label.italic else "normal",
                         arrowprops=arrow if leader else None)
    _aim(artist, dx, dy)
    return artist


def _line_boxes(ax, step: float = 8.0) -> list[Bbox]:
    """Small boxes along every drawn line (Pareto steps, paper connectors), so labels can
    prefer not to be struck through; long or diagonal segments are cut into short pieces."""
    boxes = []
    for line in ax.get_lines():
        if line.get_linestyle() in ("None", "", " ") or len(line.get_xydata()) < 2:
            continue
        points = ax.transData.transform(line.get_xydata())
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
            pieces = max(int(np.hypot(x1 - x0, y1 - y0) // step), 1)
            for t0, t1 in zip(np.linspace(0, 1, pieces + 1)[:-1], np.linspace(0, 1, pieces + 1)[1:]):
                xs, ys = (x0 + (x1 - x0) * np.array([t0, t1]), y0 + (y1 - y0) * np.array([t0, t1]))
                boxes.append(Bbox.from_extents(xs.min(), ys.min(), xs.max(), ys.max()).padded(1.5))
    return boxes


def _best_offset(ax, label: PointLabel, hard: Sequence[Bbox], soft: Sequence[Bbox], renderer):
    """(hard overlap, offset, box) of the cheapest candidate. Hard obstacles are markers,
    labels and the legend; soft ones (lines) cost a quarter as much and never exclude."""
    inside = ax.get_window_extent(renderer)
    probe = _annotate(ax, label, *_OFFSETS[0])
    best = None
    for offset in _OFFSETS:
        _aim(probe, *offset)
        box = probe.get_window_extent(renderer).padded(2)  # a little air between labels
        outside = box.width * box.height - _overlap(box, inside)
        hard_overlap = sum(_overlap(box, other) for other in hard) + 10 * outside
        cost = hard_overlap + 0.25 * sum(_overlap(box, other) for other in soft)
        if best is None or cost < best[0]:
            best = (cost, hard_overlap, offset, box)
        if cost == 0:
            break
    probe.remove()
    return best[1:]


def place_labels(ax, labels: Sequence[PointLabel], obstacles: Sequence[Bbox] = ()) -> int:
    """Greedy placement in the given order (most important first): each label goes to the
    nearest offset that hits no marker, line, earlier label or legend and stays inside the
    axes. A label that can only overlap other text or markers is left out, since overlapping
    text helps no one; returns how many were."""
    renderer = ax.figure.canvas.get_renderer()
    taken = [_point_box(ax, lab.x, lab.y) for lab in labels] + list(obstacles)
    lines = _line_boxes(ax)
    left_out = 0
    for label in labels:
        overlap, offset, box = _best_offset(ax, label, taken, lines, renderer)
        if overlap > 0.03 * box.width * box.height:
            left_out += 1
            continue
        _annotate(ax, label, *offset, leader=offset not in _OFFSETS[:len(_DIRECTIONS)])
        taken.append(box)
    return left_out


def _freeze_layout(fig, axes) -> None:
    """Fix axes positions and limits so label placement measures what will be saved."""
    fig.tight_layout()
    for ax in axes:
        ax.set_xlim(ax.get_xlim())
        ax.set_ylim(ax.get_ylim())


# ----------------------------------------------------------------------------- scatter figures


@dataclass(frozen=True)
class PlotOptions:
    dataset: str = "cifar10"
    with_paper: bool = False

    @property
    def dataset_name(self) -> str:
        return DATASET_NAMES.get(self.dataset, self.dataset)


def _by_family(groups: Sequence[Group]) -> list[tuple[str, list[Group]]]:
    families = sorted({g.family for g in groups}, key=lambda f: (family_rank(f), f))
    return [(f, [g for g in groups if g.family == f]) for f in families]


def _draw_groups(ax, groups: Sequence[Group], cost: Callable[[Group], float | None]) -> None:
    """Mean markers with ±std bars, one colour and marker per family."""
    for family, members in _by_family(groups):
        style = family_style(family)
        ax.errorbar([cost(g) for g in members], [g.error_mean for g in members],
                    yerr=[g.error_std for g in members], fmt=style.marker, color=style.color,
                    ms=MARKER_SIZE, mec="white", mew=0.6, ecolor=style.color, elinewidth=1.1,
                    capsize=2.5, label=style.label, zorder=3)


def _bar_box(ax, x: float, y: float, std: float) -> Bbox:
    (px, low), (_, high) = ax.transData.transform([(x, y - std), (x, y + std)])
    return Bbox.from_extents(px - 3, low, px + 3, high)


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


def _group_labels(groups: Sequence[Group], cost: Callable[[Group], float | None]) -> list[PointLabel]:
    return [PointLabel(cost(g), g.error_mean, display_name(g.model, g.dropout),
                       family_style(g.family).color) for g in groups]


def _plot_published(ax, groups, options: PlotOptions, x_of, cost):
    """Hollow published points, a dotted line to the matching reproduction when there is one;
    only unmatched published points get a '(paper)' label, matched ones are read via the line.
    Returns (labels, [(x, error)] of every published point drawn)."""
    labels, points = [], []
    for entry in paper.published_results(options.dataset):
        x = x_of(entry)
        if not _finite(x):
            continue
        style = family_style(family_of_model(entry.model))
        ax.plot([x], [entry.error], marker=style.marker, ms=7.5, mfc="none", mec=style.color,
                mew=1.4, ls="none", zorder=4)
        points.append((x, entry.error))
        ours = [g for g in groups if paper.published_entry(g.model, options.dataset, g.dropout) == entry]
        if ours:
            ax.plot([cost(ours[0]), x], [ours[0].error_mean, entry.error],
                    ls=":", lw=1.0, color=style.color, alpha=0.7, zorder=2)
        else:
            name = display_name(entry.model, entry.dropout) + " (paper)"
            labels.append(PointLabel(x, entry.error, name, style.color, italic=True))
    return labels, points


def _published_at_measured_flops(groups: Sequence[Group]):
    # Papers give no fvcore FLOPs; an architecture's FLOPs do not depend on the run, so a
    # published model is placed at the FLOPs this sweep measured for it (skipped if unmeasured).
    flops = {g.model: g.flops for g in groups if _finite(g.flops)}
    return lambda entry: flops.get(entry.model)


def _legend(ax, groups: Sequence[Group], with_paper: bool, loc: str = "best") -> None:
    handles, labels = ax.get_legend_handles_labels()
    if with_paper:
        handles.append(Line2D([], [], marker="o", ms=7, mfc="none", mec="0.3", mew=1.3, ls="none"))
        labels.append("published (hollow)")
    ax.legend(handles, labels, loc=loc, title=_seed_note(groups), title_fontsize=8,
              framealpha=0.9)


def _is_published(group: Group) -> bool:
    return any(paper.published_entry(group.model, dataset, group.dropout) for dataset in DATASET_NAMES)


def _scatter(ax, groups, cost, xlabel: str, higher_is_better: bool = False,
             formatter: Callable = _si) -> None:
    _draw_groups(ax, groups, cost)
    _draw_pareto(ax, [cost(g) for g in groups], [g.error_mean for g in groups], higher_is_better)
    _log_x(ax, formatter)
    ax.margins(x=0.1, y=0.12)
    ax.set(xlabel=xlabel, ylabel=error_label(groups))


def _label_points(ax, groups, cost, higher_is_better: bool = False,
                  extra_labels: Sequence[PointLabel] = (), extra_points=()) -> None:
    """Name the points once the layout is final. Where it is crowded, later labels are the ones
    left out, so the order is: Pareto-optimal points, published configurations, the rest."""
    labels = _group_labels(groups, cost)
    front = pareto_front([(-cost(g) if higher_is_better else cost(g), g.error_mean) for g in groups])
    famous = [i for i, g in enumerate(groups) if i not in front and _is_published(g)]
    rest = [i for i in range(len(groups)) if i not in front and i not in famous]
    ordered = [labels[i] for i in front + famous] + list(extra_labels) + [labels[i] for i in rest]
    obstacles = [_bar_box(ax, cost(g), g.error_mean, g.error_std) for g in groups if g.error_std > 0]
    obstacles += [_point_box(ax, x, y) for x, y in extra_points]
    renderer = ax.figure.canvas.get_renderer()
    if ax.get_legend() is not None:
        obstacles.append(ax.get_legend().get_window_extent(renderer))
    # The note's corner is reserved up front; it is emptied if every label fits.
    note = ax.text(0.01, 0.01, "00 crowded labels left out", transform=ax.transAxes,
                   fontsize=7, color="0.4", ha="left", va="bottom")
    left_out = place_labels(ax, ordered, [*obstacles, note.get_window_extent(renderer)])
    note.set_text(f"{left_out} crowded label{'s' if left_out > 1 else ''} left out" if left_out else "")


def _error_vs_cost(groups, options: PlotOptions, cost, xlabel: str, title: str,
                   published_x=None) -> Figure | None:
    drawn = [g for g in groups if _finite(cost(g))]
    if not drawn:
        return None
    fig, (ax,) = _new_figure()
    _scatter(ax, drawn, cost, xlabel)
    with_paper = options.with_paper and published_x is not None
    paper_labels, paper_points = [], []
    if with_paper:
        paper_labels, paper_points = _plot_published(ax, drawn, options, published_x, cost)
    ax.set_title(f"{options.dataset_name}: {title}")
    _legend(ax, drawn, with_paper)
    _freeze_layout(fig, [ax])
    _label_points(ax, drawn, cost, extra_labels=paper_labels, extra_points=paper_points)
    return fig


def plot_error_vs_params(groups: Sequence[Group], options: PlotOptions) -> Figure | None:
    return _error_vs_cost(groups, options, lambda g: g.params, "parameters",
                          "error vs parameters", published_x=lambda entry: entry.params)


def plot_error_vs_flops(groups: Sequence[Group], options: PlotOptions) -> Figure | None:
    return _error_vs_cost(groups, options, lambda g: g.flops, "multiply-adds (fvcore FLOPs)",
                          "error vs compute per image",
                          published_x=_published_at_measured_flops(groups))


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


def plot_error_vs_time(groups: Sequence[Group], options: PlotOptions) -> Figure | None:
    timed = [g for g in groups if _finite(g.wall_seconds)]
    if not timed:
        return None
    scale, unit = _time_unit([g.wall_seconds for g in timed])
    fast = [g for g in timed if _finite(g.images_per_sec)]
    fig, axes = _new_figure(width=10.0 if fast else 7.0, ncols=2 if fast else 1, sharey=True)
    wall_time = lambda g: g.wall_seconds / scale  # noqa: E731
    panels = [(axes[0], timed, wall_time, f"training wall time ({unit})", False, _plain)]
    if fast:
        panels.append((axes[1], fast, lambda g: g.images_per_sec, "training throughput (images/s)",
                       True, _si))
    for ax, members, cost, xlabel, higher_is_better, formatter in panels:
        _scatter(ax, members, cost, xlabel, higher_is_better, formatter)
    fig.suptitle(f"{options.dataset_name}: error vs training cost{_device_note(timed)}", size=11)
    axes[-1].yaxis.set_tick_params(labelleft=True)
    _legend(axes[0], timed, False)
    _freeze_layout(fig, axes)
    for ax, members, cost, _, higher_is_better, _ in panels:
        _label_points(ax, members, cost, higher_is_better)
    return fig


# ----------------------------------------------------------------------------- heatmap


def _cells(groups: Sequence[Group]) -> dict[tuple[int, int], tuple[Group, int]]:
    """(depth, k) -> (best group, how many configs shared the cell, e.g. other learning rates)."""
    cells: dict[tuple[int, int], tuple[Group, int]] = {}
    for g in groups:
        key = (g.depth, g.widen_factor)
        best, count = cells.get(key, (g, 0))
        cells[key] = (g if g.error_mean < best.error_mean else best, count + 1)
    return cells


def _cell_text(group: Group, shared: int, options: PlotOptions) -> str:
    error = f"{group.error_mean:.2f}" + (f"±{group.error_std:.2f}" if group.n > 1 else "")
    lines = [error + ("*" if shared > 1 else ""), _si(group.params) if _finite(group.params) else ""]
    published = paper.published_error(group.model, options.dataset, group.dropout)
    if options.with_paper and published is not None:
        lines.append(f"paper {published:.2f}")
    return "\n".join(line for line in lines if line)


def _text_color(rgba) -> str:
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "black" if luminance > 0.55 else "white"


def _heatmap_panel(ax, groups, depths, norm, cmap, options: PlotOptions):
    """One dropout value: rows are all depths (aligned across panels), columns its own widths."""
    widths = sorted({g.widen_factor for g in groups})
    cells = _cells(groups)
    grid = np.full((len(depths), len(widths)), np.nan)
    for (depth, k), (group, _) in cells.items():
        grid[depths.index(depth), widths.index(k)] = group.error_mean
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
    for (depth, k), (group, shared) in cells.items():
        ax.text(widths.index(k), depths.index(depth), _cell_text(group, shared, options),
                ha="center", va="center", fontsize=7.5, linespacing=1.25,
                color=_text_color(cmap(norm(group.error_mean))))
    ax.set_xticks(range(len(widths)), [str(k) for k in widths])
    ax.set_yticks(range(len(depths)), [str(d) for d in depths])
    # White lines between cells; the default grid would cut through the numbers.
    ax.set_xticks(np.arange(len(widths) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(depths) + 1) - 0.5, minor=True)
    ax.grid(False)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="both", length=0)
    ax.spines[:].set_visible(False)
    ax.set_xlabel("widen factor k")
    return image, any(shared > 1 for _, shared in cells.values())


def plot_heatmap(groups: Sequence[Group], options: PlotOptions) -> Figure | None:
    wide = [g for g in groups if g.family == "wrn" and g.depth and g.widen_factor]
    if not wide:
        return None
    depths = sorted({g.depth for g in wide})
    # One panel per dropout value: dropout is a third axis, not a cell of the depth x width grid.
    panels = {d: [g for g in wide if g.dropout == d] for d in sorted({g.dropout for g in wide})}
    columns = [len({g.widen_factor for g in panel}) for panel in panels.values()]
    errors = [g.error_mean for g in wide]
    norm = Normalize(vmin=min(errors), vmax=max(max(errors), min(errors) + 0.5))
    cmap = matplotlib.colormaps["viridis_r"].with_extremes(bad="#f2f2f2")
    fig, axes = _new_figure(width=max(2.4 + 0.85 * sum(columns) + 0.3 * len(columns), 5.0),
                            height=max(1.6 + 0.62 * len(depths), 3.2), ncols=len(panels),
                            gridspec_kw={"width_ratios": columns})
    fig.set_layout_engine("constrained")
    shared = False
    for ax, (dropout, panel) in zip(axes, panels.items()):
        image, panel_shared = _heatmap_panel(ax, panel, depths, norm, cmap, options)
        shared |= panel_shared
        ax.set_title(f"dropout {dropout:g}" if len(panels) > 1 else "", fontsize=10)
        ax.tick_params(axis="y", labelleft=ax is axes[0])
    axes[0].set_ylabel("depth d")
    fig.colorbar(image, ax=list(axes), label=f"mean {error_label(wide)}", shrink=0.9)
    note = "  (* best of several configs)" if shared else ""
    fig.suptitle(f"{options.dataset_name}: Wide ResNet error by depth and width{note}", size=11)
    return fig


# ----------------------------------------------------------------------------- curves


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _epoch_point(record) -> tuple[int, float] | None:
    """(epoch, val_acc) of one log line, None for a line without them (e.g. a test-only line)."""
    try:
        return int(record["epoch"]), float(record["val_acc"])
    except (KeyError, TypeError, ValueError):
        return None


def load_curve(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, val accuracy %) from the run's epochs.jsonl; None when there is no usable log."""
    if run.run_dir is None or not (run.run_dir / EPOCHS_FILE).is_file():
        return None
    records, problems = read_jsonl(run.run_dir / EPOCHS_FILE)
    for problem in problems:
        _warn(problem)
    # A resumed run may log an epoch twice; the later line is the one that counted.
    by_epoch = dict(point for point in map(_epoch_point, records) if point is not None)
    if not by_epoch:
        return None
    epochs = np.array(sorted(by_epoch))
    return epochs, 100.0 * np.array([by_epoch[e] for e in epochs])


FAMILY_LINESTYLES = {"wrn": "-", "resnet": "--", "preact-resnet": "-.", "plain": ":"}
LEGEND_COLUMNS = 4  # legend columns under the curve panels


def _config_styles(groups: Sequence[Group]) -> dict[str, tuple]:
    """A colour per config; the line style says the family, as the marker does elsewhere."""
    colors = matplotlib.colormaps["tab10" if len(groups) <= 10 else "tab20"].colors
    return {g.config: (colors[i % len(colors)], FAMILY_LINESTYLES.get(g.family, (0, (1, 2))))
            for i, g in enumerate(groups)}


def _curve_labels(groups: Sequence[Group]) -> dict[str, str]:
    names = Counter(display_name(g.model, g.dropout) for g in groups)
    labels = {}
    for g in groups:
        name = display_name(g.model, g.dropout)
        labels[g.config] = name if names[name] == 1 else f"{name} [{g.config}]"
        labels[g.config] += f" (n={g.n})" if g.n > 1 else ""
    return labels


def _zoom_limits(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[tuple, tuple]:
    """The last quarter of training, where final accuracies differ by tenths of a percent."""
    first = min(int(epochs.min()) for epochs, _ in curves)
    last = max(int(epochs.max()) for epochs, _ in curves)
    start = last - max((last - first) / 4, 1)
    tail = np.concatenate([acc[epochs >= start] for epochs, acc in curves])
    low, high = float(tail.min()), float(tail.max())
    pad = max(0.08 * (high - low), 0.2)
    return (start, last), (low - pad, high + pad)


def plot_curves(groups: Sequence[Group], options: PlotOptions) -> Figure | None:
    styles, labels = _config_styles(groups), _curve_labels(groups)
    legend_rows = math.ceil(len(groups) / LEGEND_COLUMNS)
    fig, (full, zoom) = _new_figure(width=10.0, height=4.6 + 0.2 * legend_rows, ncols=2)
    fig.set_layout_engine("constrained")
    curves = []
    for group in groups:
        color, linestyle = styles[group.config]
        for i, run in enumerate(group.runs):
            curve = load_curve(run)
            if curve is None:
                _warn(f"{group.config} seed {run.seed or '?'}: no epochs log in {run.run_dir}; curve skipped")
                continue
            curves.append(curve)
            for ax in (full, zoom):
                ax.plot(*curve, color=color, ls=linestyle, lw=1.1, alpha=0.85,
                        label=labels[group.config] if ax is full else None)
    if not curves:
        return None
    zoom_x, zoom_y = _zoom_limits(curves)
    zoom.set(xlim=zoom_x, ylim=zoom_y, title="last quarter of training")
    full.set(ylim=(0, 100), title="all epochs")
    for ax in (full, zoom):
        ax.set(xlabel="epoch", ylabel="validation accuracy (%)")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    _curve_legend(fig, *_dedupe_legend(full))
    fig.suptitle(f"{options.dataset_name}: validation accuracy per epoch", size=11)
    return fig


def _curve_legend(fig, handles, labels) -> None:
    # Under the panels, in columns: beside them it squeezes the panels and collides with the title.
    fig.legend(handles, labels, loc="outside lower center", ncol=min(LEGEND_COLUMNS, len(labels)),
               fontsize=8, title_fontsize=8, title="seeds share a colour; line style marks the family")


def _dedupe_legend(ax) -> tuple[list, list]:
    handles, labels = ax.get_legend_handles_labels()
    seen = dict(zip(labels, handles))  # a config whose first seed had no log labels a later one
    return list(seen.values()), list(seen.keys())


# ----------------------------------------------------------------------------- CLI


# (file stem, figure function, why it can come out empty); a function returns None when empty.
FIGURES: tuple[tuple[str, Callable[[Sequence[Group], PlotOptions], Figure | None], str], ...] = (
    ("error_vs_params", plot_error_vs_params, "no finished run has params"),
    ("error_vs_flops", plot_error_vs_flops, "no finished run has flops"),
    ("heatmap", plot_heatmap, "no finished Wide ResNet runs"),
    ("error_vs_time", plot_error_vs_time, "no finished run has wall_seconds"),
    ("curves", plot_curves, "no run has a readable epochs.jsonl"),
)


def save_figure(fig: Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        # No date in the metadata: re-plotting unchanged results gives identical files.
        metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
        # To a temporary name, then renamed: a killed plot never leaves half a figure.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, bbox_inches="tight", pad_inches=0.08, metadata=metadata)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(path)
    return paths


def write_plots(results: Results, out: Path, options: PlotOptions,
                formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Every figure the results support; a figure without data (e.g. no WRN runs) is skipped."""
    groups = aggregate(results.runs)
    written = []
    with matplotlib.rc_context(STYLE):
        for name, make, empty_reason in FIGURES:
            fig = make(groups, options)
            if fig is None:
                _warn(f"{name}: skipped, {empty_reason}")
                continue
            written += save_figure(fig, out / name, formats)
    return written


def _formats(text: str) -> list[str]:
    formats = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FORMATS)}, comma separated")
    return formats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wrn plot", description="Plot a sweep's results.csv: error vs parameters, FLOPs and "
        "training time, a WRN depth x width heatmap, and validation curves.")
    parser.add_argument("results", type=Path, metavar="RESULTS.csv")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the figures")
    parser.add_argument("--paper", action="store_true",
                        help="overlay the published WRN-paper numbers as hollow markers")
    parser.add_argument("--dataset", choices=sorted(DATASET_NAMES), default="cifar10",
                        help="which published numbers to overlay, and the title (default cifar10)")
    parser.add_argument("--formats", type=_formats, default=["png", "svg"],
                        help="comma-separated image formats (default png,svg)")
    return parser


def _note_skipped(results: Results) -> None:
    if results.skipped:
        left_out = ", ".join(f"{n} {status}" for status, n in sorted(results.skipped.items()))
        print(f"note: only finished runs are plotted; left out {left_out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = load_results(args.results)
        options = PlotOptions(dataset=args.dataset, with_paper=args.paper)
        _note_skipped(results)
        written = write_plots(results, args.out, options, args.formats)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
