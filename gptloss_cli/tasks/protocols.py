"""The protocol card every result carries, and each peer's own numbers under its own names."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.batches import all_windows
from ..core.plan import Plan
from ..core.protocols import Protocol
from ..core.totals import LN2, Totals, exp_or_none
from ..core.windows import TokenizedDocument

TOKENIZATION = {
    Protocol.gptloss: "no special tokens (each window adds BOS)",
    Protocol.lm_eval: "the tokenizer's defaults (its special tokens), as lm-eval's tok_encode",
    Protocol.llama_cpp: "one stream per document, the tokenizer's defaults (BOS first when it adds one)",
    Protocol.hf_stride: "the tokenizer's defaults (its special tokens)",
    Protocol.gptq: "the tokenizer's defaults (its special tokens)",
}
BOS_RULE = {
    Protocol.gptloss: "BOS starts every window",
    Protocol.lm_eval: "BOS (else EOS) before the first window only",
    Protocol.llama_cpp: "BOS replaces each chunk's first token (when the tokenizer adds BOS)",
    Protocol.hf_stride: "none added",
    Protocol.gptq: "none added",
}
AGGREGATION = {
    Protocol.gptloss: "micro average over scored tokens",
    Protocol.lm_eval: "sum of log-likelihoods over tokens, words and bytes (total.lm_eval)",
    Protocol.llama_cpp: "micro average over scored tokens; ± as llama-perplexity (total.llama_cpp)",
    Protocol.hf_stride: "window means weighted by the recipe's count (total.hf_stride); ours beside it",
    Protocol.gptq: "mean of per-chunk means (chunks of equal size: the micro average)",
}
WHY = {
    Protocol.gptloss: "every token once, BOS first in every window, up to max-length - 1 tokens of context",
    Protocol.lm_eval: "each block after the first starts with one token of context: higher PPL on long texts",
    Protocol.llama_cpp: "only each chunk's second half is scored (at least n_ctx/2 of context): lower PPL",
    Protocol.hf_stride: "no BOS, the first token unscored; its count is one short per overlapping window",
    Protocol.gptq: "no BOS; each chunk restarts without context and the tail is dropped",
}


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
        protocol, plan = self.plan.protocol, self.plan
        advances = plan.stride if protocol in (Protocol.gptloss, Protocol.hf_stride) else None
        return {
            "name": protocol.value,
            "tokenization": TOKENIZATION[protocol],
            "bos": BOS_RULE[protocol],
            "window": plan.max_length,
            "stride": advances,
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
            "divisor": "tokens, words and bytes" if protocol is Protocol.lm_eval else "tokens",
            "aggregation": AGGREGATION[protocol],
        }

    def line(self) -> str:
        """The card in one line, for a table's caption."""
        plan = self.plan
        added = plan.bos_token_id if plan.bos_token_id is not None else plan.prefix_token_id
        bos = BOS_RULE[plan.protocol] + ("" if added is None else f" (id {added})")
        if plan.protocol is Protocol.gptloss and plan.bos_token_id is None:
            bos = "no BOS token"
        stride = f", stride {plan.stride}" if plan.protocol in (Protocol.gptloss, Protocol.hf_stride) else ""
        ctx = "" if self.context_min is None else f"; context {self.context_min}–{self.context_max}"
        return (
            f"protocol {plan.protocol.value}: {bos}; {self.windows} windows of {plan.max_length}{stride}{ctx}; "
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


@dataclass(frozen=True)
class PeerCounts:
    """What a peer's figures divide by besides the totals; each adds over documents (and so over shards)."""

    windows: int = 0  # chunks run (llama.cpp, gptq)
    words: int = 0  # lm-eval: words of the whole texts, as its wikitext task counts them
    bytes: int = 0  # lm-eval: UTF-8 bytes of the whole texts
    recipe: tuple[float, int] | None = None  # hf-stride: (Σ window mean x count, Σ count)

    @classmethod
    def of_texts(cls, texts: Sequence[str], windows: int, recipe: tuple[float, int] | None) -> PeerCounts:
        words = sum(len(re.split(r"\s+", t)) for t in texts)
        return cls(windows, words, sum(len(t.encode("utf-8")) for t in texts), recipe)

    @classmethod
    def combine(cls, parts: Sequence[PeerCounts]) -> PeerCounts:
        recipes = [p.recipe for p in parts if p.recipe is not None]
        recipe = (math.fsum(r[0] for r in recipes), sum(r[1] for r in recipes)) if recipes else None
        return cls(sum(p.windows for p in parts), sum(p.words for p in parts), sum(p.bytes for p in parts), recipe)

    @classmethod
    def from_peer(cls, peer: dict[str, Any], recipe: tuple[float, int] | None) -> PeerCounts:
        """Read back from a total's peer block (the `peer_numbers` of a shard)."""
        block: dict[str, Any] = next(iter(peer.values()), {}) if peer else {}
        return cls(int(block.get("chunks", 0)), int(block.get("words", 0)), int(block.get("bytes", 0)), recipe)


def peer_numbers(protocol: Protocol, total: Totals, counts: PeerCounts) -> dict[str, Any] | None:
    """The peer's own figures, under its names: `{"lm_eval": {...}}` and so on; None for gptloss."""
    windows, recipe = counts.windows, counts.recipe
    if protocol is Protocol.lm_eval:
        ll = -total.nll_sum
        words, n_bytes = counts.words, counts.bytes
        return {
            "lm_eval": {
                "log_likelihood": ll,
                "words": words,
                "bytes": n_bytes,
                "word_perplexity": exp_or_none(-ll / words) if words else None,
                "byte_perplexity": exp_or_none(-ll / n_bytes) if n_bytes else None,
                "bits_per_byte": -ll / (n_bytes * LN2) if n_bytes else None,
            }
        }
    if protocol is Protocol.llama_cpp:
        n = total.tokens_scored
        mean = total.nll_sum / n if n else None
        spread = None
        if mean is not None and n > 1:
            spread = math.sqrt(max(0.0, total.nll_sq_sum / n - mean * mean) / (n - 1))
        ppl = exp_or_none(mean)
        plus_minus = None if ppl is None or spread is None else ppl * spread
        return {"llama_cpp": {"perplexity": ppl, "plus_minus": plus_minus, "chunks": windows}}
    if protocol is Protocol.hf_stride and recipe is not None:
        weighted, count = recipe
        return {
            "hf_stride": {
                "perplexity": exp_or_none(weighted / count) if count else None,
                "tokens": count,
                "corrected_perplexity": total.perplexity,
                "corrected_tokens": total.tokens_scored,
            }
        }
    if protocol is Protocol.gptq:
        return {"gptq": {"perplexity": total.perplexity, "chunks": windows}}
    return None
