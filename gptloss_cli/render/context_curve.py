"""The `score --context-lengths` table: one row per window length, the same tokens in each."""

from __future__ import annotations

from rich import box
from rich.table import Table

from ..tasks.context_curve import ContextCurve
from .analyses import sparkline
from .format import interval, num


def curve_table(curve: ContextCurve) -> Table:
    first = curve.points[0].totals.tokens_scored if curve.points else 0
    means = [p.totals.mean_nll for p in curve.points]
    table = Table(
        title=f"{curve.model['spec']} · PPL of the same {first:,} tokens as the context grows",
        caption=f"windows of L tokens (BOS included) advancing by L/2; tokens after the first {curve.skipped} of "
        f"each document; mean NLL from the shortest to the longest context: {sparkline(means)}",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for header in ("L", "stride", "context", "tokens", "mean NLL", "PPL", "PPL 95% CI"):
        table.add_column(header, justify="right")
    for p in curve.points:
        context = "—" if p.context is None else f"{p.context[0]}–{p.context[1]}"
        totals = p.totals
        table.add_row(
            str(p.length),
            str(p.stride),
            context,
            str(totals.tokens_scored),
            num(totals.mean_nll, 4),
            num(totals.perplexity, 3),
            interval(totals.perplexity_ci95),
        )
    return table
