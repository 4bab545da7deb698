"""`score --protocol all`: each preset's numbers on one table, with a line on why each differs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..core.protocols import Protocol
from ..models.spec import ModelInfo
from ..tasks.protocol_runs import PresetRun
from ..tasks.protocols import WHY
from ..tasks.score import ScoreResult
from .format import DASH, num

PROTOCOLS_SCHEMA = "gptloss.protocols/v1"


def peer_prints(result: ScoreResult) -> str:
    """What the peer itself would print for these documents."""
    total, protocol = result.corpus.to_dict(), result.plan.protocol
    if protocol is Protocol.lm_eval:
        return f"word PPL {num(total['lm_eval']['word_perplexity'], 2)}"
    if protocol is Protocol.llama_cpp:
        peer = total["llama_cpp"]
        return f"{num(peer['perplexity'], 4)} ± {num(peer['plus_minus'], 4)}"
    if protocol is Protocol.hf_stride:
        peer = total["hf_stride"]
        return f"{num(peer['perplexity'], 3)} ({peer['tokens']} tok)"
    return num(result.total.perplexity, 3)


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
            table.add_row(run.protocol.value, DASH, DASH, DASH, DASH, DASH, Text(run.error or DASH))
            continue
        card = run.result.card
        context = f"{card.context_min}–{card.context_max}"
        cells = [run.protocol.value, num(run.result.total.perplexity, 3), str(card.tokens_scored)]
        cells += [str(card.tokens - card.tokens_scored), context, str(card.windows), peer_prints(run.result)]
        table.add_row(*(Text(c) for c in cells))
    why = Text("\n".join(f"{r.protocol.value}: {WHY[r.protocol]}" for r in runs))
    note = Text("token PPL: exp(mean NLL) of the tokens each protocol scores; context: tokens seen before them")
    return Group(table, note, why)


def protocols_json(model: ModelInfo, runs: Sequence[PresetRun]) -> dict[str, Any]:
    out = []
    for run in runs:
        entry: dict[str, Any] = {"protocol": run.protocol.value}
        if run.result is None:
            entry["error"] = run.error
        else:
            entry["settings"] = run.result.settings()
            entry["total"] = run.result.total_dict()
        out.append(entry)
    return {"schema": PROTOCOLS_SCHEMA, "model": model.to_dict(), "protocols": out}
