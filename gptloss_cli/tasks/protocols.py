"""The protocol card every result carries: how its number was made, in the preset's own words (core.presets)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.batches import all_windows
from ..core.plan import Plan
from ..core.windows import TokenizedDocument


@dataclass(frozen=True)
class ProtocolCard:
    """How a number was made: the tokenisation, the windows, the context, what was scored and how it adds up."""

    plan: Plan
    windows: int
    tokens: int
    tokens_scored: int
    context_min: int | None
    context_max: int | None
    context_mean: float | None

    def to_dict(self) -> dict[str, Any]:
        preset, plan = self.plan.preset, self.plan
        return {
            "name": preset.name,
            "tokenization": preset.tokenization,
            "bos": preset.bos_rule,
            "window": plan.max_length,
            "stride": preset.shown_stride(plan.layout),
            "context_min": self.context_min,
            "context_max": self.context_max,
            "context_mean": self.context_mean,
            "windows": self.windows,
            "tokens": self.tokens,
            "tokens_scored": self.tokens_scored,
            "tokens_dropped": self.tokens - self.tokens_scored,
            "log_softmax": "float32 over the whole vocabulary, as the peer computes it"
            if plan.peer_softmax
            else "blocked online log-sum-exp in float32 (exact to ~1e-8)",
            "divisor": preset.divisor,
            "aggregation": preset.aggregation,
        }

    def line(self) -> str:
        """The card in one line, for a table's caption."""
        plan, preset = self.plan, self.plan.preset
        bos = preset.bos_line(plan.bos_token_id, plan.prefix_token_id)
        shown = preset.shown_stride(plan.layout)
        stride = "" if shown is None else f", stride {shown}"
        ctx = "" if self.context_min is None else f"; context {self.context_min}–{self.context_max}"
        return (
            f"protocol {preset.name}: {bos}; {self.windows} windows of {plan.max_length}{stride}{ctx}; "
            f"{self.tokens_scored} of {self.tokens} tokens scored"
        )


def protocol_card(plan: Plan, tokenized: Sequence[TokenizedDocument]) -> ProtocolCard:
    """The card of `plan` over these documents, from the windows it will run (before any forward pass)."""
    docs = list(tokenized)
    windows = all_windows(docs, plan, in_order=True)
    lowest, highest, count, total = None, None, 0, 0
    for w in windows:
        positions = docs[w.doc].scored_positions(w.score_start, w.end)
        if not len(positions):
            continue
        context = (0 if w.prefix is None else 1) + positions - w.start  # (k,)
        lowest = int(context.min()) if lowest is None else min(lowest, int(context.min()))
        highest = int(context.max()) if highest is None else max(highest, int(context.max()))
        count, total = count + len(positions), total + int(context.sum())
    mean = total / count if count else None
    return ProtocolCard(plan, len(windows), sum(len(d) for d in docs), count, lowest, highest, mean)
