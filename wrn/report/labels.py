"""Point labels placed greedily without overlaps, at most MAX_LABELS per axes: each label's positions
are tried against all obstacle boxes in one vectorised step, linear in the number of points."""

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
_OFFSETS = np.array([(dx * r, dy * r) for r in (1.0, 1.8, 2.7, 3.6, 4.5) for dx, dy in _DIRECTIONS])


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
