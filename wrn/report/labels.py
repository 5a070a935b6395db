"""Point labels placed greedily without overlaps, at most MAX_LABELS per axes.

Obstacles are kept as one (n, 4) array of display-space boxes (x0, y0, x1, y1), so testing a
candidate position against every marker is one vectorised step: placing L <= MAX_LABELS labels
among n points costs O(L * n), linear in the number of points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from wrn.report.styles import MARKER_SIZE

MAX_LABELS = 30  # per axes; the labels past it (least important first) are not drawn
LABEL_SIZE = 7.5
# Offsets in points, nearest first; the first that overlaps nothing wins. Past the first ring a
# thin leader line ties the label to its point.
_DIRECTIONS = ((5, 4), (5, -4), (-5, 4), (-5, -4), (0, 7), (0, -7), (7, 0), (-7, 0))
_OFFSETS = [(dx * r, dy * r) for r in (1.0, 1.8, 2.7, 3.6, 4.5) for dx, dy in _DIRECTIONS]


@dataclass(frozen=True)
class PointLabel:
    x: float
    y: float
    text: str
    color: str
    italic: bool = False


@dataclass(frozen=True)
class Placement:
    """How many labels were drawn, left out for want of room, and left out past the cap."""

    drawn: int
    crowded: int
    capped: int


def point_boxes(ax, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """The display-space boxes of markers at data points (x, y)."""
    if len(xs) == 0:
        return np.empty((0, 4))
    radius = MARKER_SIZE / 2 * ax.figure.dpi / 72 + 1
    centres = ax.transData.transform(np.column_stack([xs, ys]))
    return np.hstack([centres - radius, centres + radius])


def bar_boxes(ax, xs: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> np.ndarray:
    """Thin boxes over vertical error bars from low to high at each x."""
    if len(xs) == 0:
        return np.empty((0, 4))
    low = ax.transData.transform(np.column_stack([xs, lows]))
    high = ax.transData.transform(np.column_stack([xs, highs]))
    return np.column_stack([low[:, 0] - 3, low[:, 1], low[:, 0] + 3, high[:, 1]])


def bbox_array(bboxes) -> np.ndarray:
    return np.array([[b.x0, b.y0, b.x1, b.y1] for b in bboxes]).reshape(-1, 4)


def _overlap(box: np.ndarray, boxes: np.ndarray) -> float:
    """Total area of `box` (4,) covered by each of `boxes` (n, 4), summed."""
    if len(boxes) == 0:
        return 0.0
    width = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    height = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    return float((np.clip(width, 0, None) * np.clip(height, 0, None)).sum())


def line_boxes(ax, step: float = 8.0) -> np.ndarray:
    """Small boxes along every drawn line (Pareto steps, paper connectors), so labels can
    prefer not to be struck through; long or diagonal segments are cut into short pieces."""
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


def _extent(artist, renderer) -> np.ndarray:
    box = artist.get_window_extent(renderer).padded(2)  # a little air between labels
    return np.array([box.x0, box.y0, box.x1, box.y1])


def _best_offset(ax, label: PointLabel, hard: np.ndarray, soft: np.ndarray, inside: np.ndarray,
                 renderer):
    """(hard overlap, offset, box) of the cheapest candidate. Hard obstacles are markers,
    labels and the legend; soft ones (lines) cost a quarter as much and never exclude."""
    probe = _annotate(ax, label, *_OFFSETS[0])
    best = None
    for offset in _OFFSETS:
        _aim(probe, *offset)
        box = _extent(probe, renderer)
        area = (box[2] - box[0]) * (box[3] - box[1])
        hard_overlap = _overlap(box, hard) + 10 * (area - _overlap(box, inside[None]))
        cost = hard_overlap + 0.25 * _overlap(box, soft)
        if best is None or cost < best[0]:
            best = (cost, hard_overlap, offset, box)
        if cost == 0:
            break
    probe.remove()
    return best[1:]


def place_labels(ax, labels: Sequence[PointLabel], obstacles: np.ndarray) -> Placement:
    """Greedy placement in the given order (most important first) of the first MAX_LABELS:
    each goes to the nearest offset that hits no obstacle (markers, bars, legend), line or
    earlier label and stays inside the axes. A label that can only overlap other text or
    markers is left out, since overlapping text helps no one."""
    renderer = ax.figure.canvas.get_renderer()
    shown = labels[:MAX_LABELS]
    hard = np.vstack([obstacles.reshape(-1, 4), point_boxes(ax, [lab.x for lab in shown],
                                                            [lab.y for lab in shown])])
    soft = line_boxes(ax)
    inside = bbox_array([ax.get_window_extent(renderer)])[0]
    crowded = 0
    for label in shown:
        overlap, offset, box = _best_offset(ax, label, hard, soft, inside, renderer)
        if overlap > 0.03 * (box[2] - box[0]) * (box[3] - box[1]):
            crowded += 1
            continue
        _annotate(ax, label, *offset, leader=offset not in _OFFSETS[:len(_DIRECTIONS)])
        hard = np.vstack([hard, box])
    return Placement(len(shown) - crowded, crowded, len(labels) - len(shown))
