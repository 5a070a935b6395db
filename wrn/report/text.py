"""The one renderer of aligned text tables, and the number formats tables and axes share."""

from __future__ import annotations

import io
from typing import Sequence

from rich import box
from rich.console import Console
from rich.table import Table

# A dashed rule under the header and nothing else: reads well in a terminal, a log and a code block.
_RULE_UNDER_HEADER = box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)
DASH = "–"  # an empty cell in human-readable tables


def render_table(header: Sequence[str], rows: Sequence[Sequence[object]],
                 align: str | Sequence[str] = "left") -> str:
    """Rows under a header, columns aligned (`align`: left/right/center, for all or per column)."""
    aligns = [align] * len(header) if isinstance(align, str) else list(align)
    if len(aligns) != len(header):
        raise ValueError(f"align names {len(aligns)} columns, the header {len(header)}")
    table = Table(box=_RULE_UNDER_HEADER, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  header_style=None)
    for name, justify in zip(header, aligns):
        table.add_column(str(name), justify=justify, no_wrap=True)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console = Console(file=io.StringIO(), width=1_000_000, color_system=None, highlight=False,
                      markup=False, emoji=False, soft_wrap=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


def si(value: float | None, _pos=None) -> str:
    """12653184 -> '12.7M', 2748 -> '2.75k'; also a matplotlib tick formatter."""
    if value is None:
        return DASH
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def duration(seconds: float | None) -> str:
    """'1h05m', '3m59s'; DASH when unknown."""
    if seconds is None:
        return DASH
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def plus_minus(mean: float, std: float, n: int, digits: int = 2) -> str:
    """'4.17 ± 0.12' over several seeds, '4.17' for one."""
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else "")
