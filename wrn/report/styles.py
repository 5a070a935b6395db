"""What every figure shares: one colour, marker and line style per family, the rc style, the canvas."""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
         "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "axes.grid.which": "major",
         "grid.alpha": 0.35, "grid.linewidth": 0.6, "axes.spines.top": False,
         "axes.spines.right": False, "svg.hashsalt": "wrn", "savefig.dpi": 150}
MARKER_SIZE = 6.5  # points


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
    """(marker fill, line style) of the index-th source."""
    return SOURCE_FILLS[index % len(SOURCE_FILLS)], SOURCE_LINES[index % len(SOURCE_LINES)]


def new_figure(width: float = 7.5, height: float = 5.0, ncols: int = 1, layout: str | None = None, **kwargs):
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False, **kwargs)[0]
