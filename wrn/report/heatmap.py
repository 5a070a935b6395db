"""The Wide ResNet depth x width heatmap: one panel per dropout value, mean error per cell."""

from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.colors import Normalize

from wrn.report import paper
from wrn.report.figures import Drawing, PlotOptions, new_figure
from wrn.report.results import Group, error_label, error_split, finite
from wrn.report.text import si


def plot_heatmap(groups: Sequence[Group], options: PlotOptions) -> Drawing | None:
    wide = [g for g in groups if g.family == "wrn" and g.depth and g.widen_factor]
    if not wide:
        return None
    depths = sorted({g.depth for g in wide})
    # One panel per source and dropout value: dropout is a third axis, not a cell of the depth x
    # width grid, and each source a grid of its own.
    keys = sorted({(options.source_index(g), g.dropout) for g in wide})
    panels = {key: [g for g in wide if (options.source_index(g), g.dropout) == key] for key in keys}
    columns = [len({g.widen_factor for g in panel}) for panel in panels.values()]
    errors = [g.error_mean for g in wide]
    norm = Normalize(vmin=min(errors), vmax=max(max(errors), min(errors) + 0.5))
    cmap = matplotlib.colormaps["viridis_r"].with_extremes(bad="#f2f2f2")
    fig, axes = new_figure(width=max(2.4 + 0.85 * sum(columns) + 0.3 * len(columns), 5.0),
                           height=max(2.0 + 0.62 * len(depths), 3.6), ncols=len(panels),
                           layout="constrained", gridspec_kw={"width_ratios": columns})
    shared = False
    for ax, ((index, dropout), panel) in zip(axes, panels.items()):
        # Rows: all depths, aligned across panels; columns: this panel's own widths.
        widths = sorted({g.widen_factor for g in panel})
        # (depth, k) -> (best group, how many configs shared the cell, e.g. other learning rates)
        cells: dict[tuple[int, int], tuple[Group, int]] = {}
        for g in panel:
            best, count = cells.get((g.depth, g.widen_factor), (g, 0))
            cells[g.depth, g.widen_factor] = (g if g.error_mean < best.error_mean else best, count + 1)
        grid = np.full((len(depths), len(widths)), np.nan)
        for (depth, k), (group, count) in cells.items():
            grid[depths.index(depth), widths.index(k)] = group.error_mean
            error = f"{group.error_mean:.2f}" + (f"±{group.error_std:.2f}" if group.n > 1 else "")
            published = paper.published_error(group.model, options.dataset, group.dropout)
            lines = [error + ("*" if count > 1 else ""), si(group.params) if finite(group.params) else "",
                     f"paper {published:.2f}" if options.with_paper and published is not None else ""]
            red, green, blue, _ = cmap(norm(group.error_mean))
            ax.text(widths.index(k), depths.index(depth), "\n".join(line for line in lines if line),
                    ha="center", va="center", fontsize=7.5, linespacing=1.25,
                    color="black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.55 else "white")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
        ax.set_xticks(range(len(widths)), [str(k) for k in widths])
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        # White lines between cells; the default grid would cut through the numbers.
        ax.set_xticks(np.arange(len(widths) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(depths) + 1) - 0.5, minor=True)
        ax.grid(False)
        ax.grid(which="minor", color="white", linewidth=2)
        ax.tick_params(which="both", length=0, labelleft=ax is axes[0])
        ax.spines[:].set_visible(False)
        ax.set_xlabel("widen factor k")
        shared |= any(n > 1 for _, n in cells.values())
        about = [options.sources[index]] if options.several_sources else []
        about += [f"dropout {dropout:g}"] if len({d for _, d in panels}) > 1 else []
        ax.set_title(", ".join(about), fontsize=10)
    axes[0].set_ylabel("depth d")
    fig.colorbar(image, ax=list(axes), label=f"mean {error_label(wide)}", shrink=0.9)
    notes = ["* best of several configs"] if shared else []
    if options.with_paper and any(paper.published_error(g.model, options.dataset, g.dropout) is not None
                                  for g in wide):
        notes.append("paper: published test error")
    title = f"Wide ResNet {error_split(wide)} error by depth and width"
    fig.suptitle(options.title(title + (f" ({'; '.join(notes)})" if notes else "")), size=11)
    return Drawing(fig)
