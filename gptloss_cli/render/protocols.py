"""`score --protocol all`: each preset's numbers on one table, with a line on why each differs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..models.spec import ModelInfo
from ..tasks.protocol_runs import PresetRun
from .format import DASH, num

PROTOCOLS_SCHEMA = "gptloss.protocols/v1"


def protocols_table(model: ModelInfo, runs: Sequence[PresetRun]) -> RenderableType:
    table = Table(
        title=Text(f"{model.spec} · {model.dtype} on {model.device}: one text, every protocol"),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for header in ("protocol", "token PPL", "scored", "dropped", "context", "windows"):
        table.add_column(header, justify="left" if header == "protocol" else "right", no_wrap=True)
    table.add_column("peer prints")
    for run in runs:
        if run.result is None or run.result.card is None:
            table.add_row(run.preset.name, DASH, DASH, DASH, DASH, DASH, Text(run.error or DASH))
            continue
        card = run.result.card
        context = f"{card.context_min}–{card.context_max}"
        peer = run.result.corpus.peer  # what the peer itself would print
        prints = num(run.result.total.perplexity, 3) if peer is None else peer.prints(num)
        cells = [run.preset.name, num(run.result.total.perplexity, 3), str(card.tokens_scored)]
        cells += [str(card.tokens - card.tokens_scored), context, str(card.windows), prints]
        table.add_row(*(Text(c) for c in cells))
    why = Text("\n".join(f"{r.preset.name}: {r.preset.why}" for r in runs))
    note = Text("token PPL: exp(mean NLL) of the tokens each protocol scores; context: tokens seen before them")
    return Group(table, note, why)


def protocols_json(model: ModelInfo, runs: Sequence[PresetRun]) -> dict[str, Any]:
    out = []
    for run in runs:
        entry: dict[str, Any] = {"protocol": run.preset.name}
        if run.result is None:
            entry["error"] = run.error
        else:
            entry["settings"] = run.result.settings()
            entry["total"] = run.result.total_dict()
        out.append(entry)
    return {"schema": PROTOCOLS_SCHEMA, "model": model.to_dict(), "protocols": out}
