"""The `annotate` summary: a row per file, the total, and the perplexity quantiles across rows."""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..core.totals import Totals
from ..tasks.annotate import AnnotateResult
from .format import num

MAX_ROWS = 20  # more files than this: the total row only


def annotate_table(result: AnnotateResult) -> RenderableType:
    """Files with their rows, rows with an error, tokens and perplexity; the total with the wall time and
    tokens per second; then the perplexity quantiles across the corpus's rows."""
    table = Table(box=box.SIMPLE_HEAD, show_footer=False)
    for name, justify in (
        ("file", "left"),
        ("rows", "right"),
        ("errors", "right"),
        ("tokens", "right"),
        ("PPL", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    shown = result.files if len(result.files) <= MAX_ROWS else []
    for item in shown:
        total = Totals.combine(item.totals)
        name = item.relative + (" (done before)" if item.skipped else "")
        table.add_row(name, f"{item.rows:,}", f"{item.errors:,}", f"{total.tokens_scored:,}", num(total.perplexity, 2))
    data = result.to_dict()
    table.add_section()
    table.add_row(
        Text(f"total ({len(result.files)} files)", style="bold"),
        f"{data['rows']:,}",
        f"{data['errors']:,}",
        f"{data['tokens']:,}",
        num(data["perplexity"], 2),
    )
    rate = data["tokens_per_second"]
    lines = [f"{result.wall_seconds:,.1f} s" + ("" if rate is None else f", {rate:,.0f} tokens/s")]
    if data["bad_lines"]:
        lines.append(f"{data['bad_lines']:,} malformed line(s) left out")
    quantiles = "  ".join(f"{k}: {num(v, 2)}" for k, v in result.quantiles.items())
    lines.append(f"row perplexity quantiles  {quantiles}")
    return Group(table, Text("\n".join(lines)))
