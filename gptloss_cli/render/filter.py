"""The `filter` summary: the thresholds, a row per file (rows read, kept, dropped for want of a value, outside
the thresholds), and the total."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..tasks.filter import FilterResult

MAX_ROWS = 20  # more files than this: the total row only


def threshold(value: float | None) -> str:
    """A threshold as the comparison needs it: enough digits to tell it from its neighbours; 'open' for none."""
    return "open" if value is None else f"{value:.8g}"


def thresholds_line(result: FilterResult) -> str:
    """What was kept: the column between its two thresholds, and the quantiles they are, if asked."""
    line = f"kept {threshold(result.low)} <= {result.column} <= {threshold(result.high)}"
    if result.cut.quantiles is not None:
        low, high = result.cut.quantiles
        line += f"  (quantiles {low:g}:{high:g} across the corpus)"
    return line


def filter_table(result: FilterResult) -> RenderableType:
    """The thresholds, then files with their rows read, kept, without a value (null) and outside; the total."""
    table = Table(box=box.SIMPLE_HEAD)
    for name in ("file", "rows", "kept", "null", "outside"):
        table.add_column(name, justify="left" if name == "file" else "right")
    for item in result.files if len(result.files) <= MAX_ROWS else ():
        table.add_row(item.relative, f"{item.rows:,}", f"{item.kept:,}", f"{item.null:,}", f"{item.outside:,}")
    data = result.to_dict()
    table.add_section()
    table.add_row(
        Text(f"total ({len(result.files)} files)", style="bold"),
        *(f"{data[key]:,}" for key in ("rows", "kept", "null", "outside")),
    )
    parts: list[RenderableType] = [Text(thresholds_line(result)), table]
    if data["bad_lines"]:
        parts.append(Text(f"{data['bad_lines']:,} malformed line(s) left out"))
    return Group(*parts)
