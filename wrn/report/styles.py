"""What every figure shares: one colour, marker and line style per family, the rc style, axes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wrn.report.text import si


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
FAMILY_LINESTYLES = {"wrn": "-", "resnet": "--", "preact-resnet": "-.", "plain": ":"}


def family_style(family: str) -> FamilyStyle:
    return FAMILY_STYLES.get(family, FamilyStyle(family or "other", "#009E73", "v"))


STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
         "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "axes.grid.which": "major",
         "grid.alpha": 0.35, "grid.linewidth": 0.6, "axes.spines.top": False,
         "axes.spines.right": False, "svg.hashsalt": "wrn", "savefig.dpi": 150}
MARKER_SIZE = 6.5  # points


def log_x(ax, formatter: Callable = si) -> None:
    """Log x labelled at 1-2-5 steps: plain '2M' reads faster than '2x10^6'."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(formatter))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def new_figure(width: float = 7.5, height: float = 5.0, ncols: int = 1, **kwargs):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False, **kwargs)[0]
    return fig, axes
