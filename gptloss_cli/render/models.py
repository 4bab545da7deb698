"""The `models` table: each bundled model, installed or not, converted or not, and its size."""

from __future__ import annotations

from rich import box
from rich.table import Table

from ..models.catalog import BundledStatus
from .format import DASH


def _mb(n: int | None) -> str:
    return DASH if n is None else f"{n / 2**20:,.0f} MiB"


def status_table(rows: list[BundledStatus]) -> Table:
    table = Table(
        title="bundled models",
        caption="use: gptloss score --model ALIAS FILE",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("alias", no_wrap=True)
    for header in ("model", "installed", "GGUF", "converted cache"):
        table.add_column(header)
    for row in rows:
        installed = "yes" if row.installed else f"no: {row.install}"
        cache = (
            _mb(row.converted_bytes)
            if row.converted
            else ("not yet (first use converts it)" if row.installed else DASH)
        )
        table.add_row(row.alias, row.description, installed, _mb(row.gguf_bytes), cache)
    return table
