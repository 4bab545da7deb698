"""Per-token and per-word records for `gptloss tokens`, streamed in document order.

A token record says which text the token covers (its owned span, see
TokenizedDocument.owned_spans, so `text[start:end] == token` and the records of a
fully scored document concatenate to its text) and how the model judged it. Word
records sum the NLL of the tokens that make up each whitespace-separated word.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine import Scorer, WindowLosses, WindowSettings, make_plan, tokens_to_score
from .inputs import Document
from .models import LoadedModel
from .stats import LN2, WORD, Totals, scored_text_extent
from .windows import TokenizedDocument, tokenize

TOKENS_SCHEMA = "gptloss.tokens/v1"


def token_records(
    tokens: TokenizedDocument, part: WindowLosses, pieces: Callable[[list[int]], list[str]]
) -> list[dict[str, Any]]:
    """One record per scored token of `part`, in position order."""
    text = tokens.document.text
    starts, ends = tokens.owned_spans()  # (n,), (n,)
    detail = part.detail
    top_texts: list[str] = []
    if detail is not None and detail.top_ids.size:
        top_texts = pieces(detail.top_ids.ravel().tolist())
    records = []
    for j, pos in enumerate(part.positions.tolist()):
        nll = float(part.nll[j])
        start, end = int(starts[pos]), int(ends[pos])
        record: dict[str, Any] = {
            "index": pos,
            "token_id": int(tokens.ids[pos]),
            "token": text[start:end],
            "start": start,
            "end": end,
            "logprob": -nll,
            "nll": nll,
            "bits": nll / LN2,
            "prob": math.exp(-nll),
        }
        if detail is not None:
            k = detail.top_ids.shape[1]
            record["rank"] = int(detail.rank[j])
            record["entropy"] = float(detail.entropy[j])
            record["context"] = int(part.context[j])
            record["top"] = [
                {"token_id": int(tid), "token": top_texts[j * k + i], "logprob": float(lp)}
                for i, (tid, lp) in enumerate(zip(detail.top_ids[j], detail.top_logprobs[j], strict=True))
            ]
        else:
            record["context"] = int(part.context[j])
        records.append(record)
    return records


def word_owner(tokens: TokenizedDocument) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The whitespace words of the text, and for each token the index of its word (-1: none).

    A token belongs to the word holding the last non-space character it owns. A token that owns
    only whitespace (a newline, say) belongs to the next word, or to the last word at the end.
    """
    text = tokens.document.text
    words = [(m.start(), m.end()) for m in WORD.finditer(text)]
    starts, ends = tokens.owned_spans()  # (n,), (n,)
    if not words:
        return words, np.full(len(tokens), -1, dtype=np.int64)
    word_of_char = np.full(len(text), -1, dtype=np.int64)  # (chars,)
    for w, (s, e) in enumerate(words):
        word_of_char[s:e] = w
    in_word = word_of_char >= 0
    # last word-character index before position i, for i in 0..chars: (chars + 1,)
    idx = np.where(in_word, np.arange(len(text)), -1)
    last_before = np.concatenate([[-1], np.maximum.accumulate(idx)]) if len(text) else np.array([-1])
    word_starts = np.array([s for s, _ in words], dtype=np.int64)  # (words,)
    last_char = last_before[ends]  # (n,) last word character before each token's end
    # A token with an empty span shares the character before its end with the token that owns it.
    probe = np.where(ends > starts, starts, np.maximum(ends - 1, 0))  # (n,)
    owned = last_char >= probe
    following = np.minimum(np.searchsorted(word_starts, ends, side="left"), len(words) - 1)  # (n,)
    owner = np.where(owned, word_of_char[np.maximum(last_char, 0)], following)
    return words, owner


def word_sums(
    tokens: TokenizedDocument, positions: np.ndarray, nll: np.ndarray
) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray, np.ndarray]:
    """The words (start, end), and per word: its tokens, its scored tokens, and their summed NLL."""
    words, owner = word_owner(tokens)
    count = np.bincount(owner[owner >= 0], minlength=len(words))  # (words,)
    scored_owner = owner[positions]  # (k,)
    keep = scored_owner >= 0
    scored = np.bincount(scored_owner[keep], minlength=len(words))  # (words,)
    total = np.bincount(scored_owner[keep], weights=nll[keep], minlength=len(words))  # (words,)
    return words, count, scored, total


def word_records(tokens: TokenizedDocument, positions: np.ndarray, nll: np.ndarray) -> list[dict[str, Any]]:
    """One record per word with at least one scored token: its text, offsets, and summed NLL."""
    text = tokens.document.text
    words, count, scored, total = word_sums(tokens, positions, nll)
    records = []
    for w, (start, end) in enumerate(words):
        if scored[w] == 0:
            continue
        value = float(total[w])
        records.append(
            {
                "index": w,
                "word": text[start:end],
                "start": start,
                "end": end,
                "tokens": int(count[w]),
                "scored_tokens": int(scored[w]),
                "logprob": -value,
                "nll": value,
                "bits": value / LN2,
                "prob": math.exp(-value),
            }
        )
    return records


@dataclass
class _Pending:
    positions: list[np.ndarray] = field(default_factory=list)
    nll: list[np.ndarray] = field(default_factory=list)


class TokenRun:
    """Records of several documents with one model, produced as the windows are scored."""

    def __init__(
        self,
        loaded: LoadedModel,
        documents: Sequence[Document],
        settings: WindowSettings,
        top_k: int = 5,
        unit: str = "token",
        inputs: dict[str, Any] | None = None,
    ) -> None:
        self.loaded = loaded
        self.inputs = inputs  # the dataset and columns read, when not files
        self.documents = list(documents)
        self.settings = settings
        self.plan = make_plan(loaded, settings)
        self.top_k = top_k
        self.unit = unit
        self.tokenized = [tokenize(loaded.tokenizer, doc) for doc in self.documents]
        self.totals: list[Totals | None] = [None] * len(self.documents)

    def tokens_to_score(self) -> int:
        return tokens_to_score(self.tokenized, self.plan)

    def header(self) -> dict[str, Any]:
        from .api import settings_dict

        settings = {**settings_dict(self.plan), "top_k": self.top_k, "unit": self.unit}
        head = {"schema": TOKENS_SCHEMA, "model": self.loaded.info.to_dict(), "settings": settings}
        return head if self.inputs is None else {**head, "input": self.inputs}

    def chunks(
        self, progress: Callable[[int], None] | None = None, on_document: Callable[[int], Any] | None = None
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """(document index, records) in document order; each document's totals are set when it is done
        (and `on_document` called with its index).

        Token records come a window at a time; word records once per document.
        """
        scorer = Scorer(self.loaded, top_k=self.top_k if self.unit == "token" else None)  # words need NLL only
        pending = _Pending()
        current = 0
        stream = scorer.windows(self.tokenized, self.plan, self.settings.padding_side, progress, in_order=True)
        for window, part in stream:
            while current < window.doc:
                yield from self._finish(current, pending, on_document)
                pending, current = _Pending(), current + 1
            pending.positions.append(part.positions)
            pending.nll.append(part.nll)
            if self.unit == "token":
                yield current, token_records(self.tokenized[current], part, self.loaded.tokenizer.pieces)
        while current < len(self.documents):
            yield from self._finish(current, pending, on_document)
            pending, current = _Pending(), current + 1

    def _finish(
        self, doc: int, pending: _Pending, on_document: Callable[[int], Any] | None
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        tokens = self.tokenized[doc]
        positions = np.concatenate(pending.positions) if pending.positions else np.zeros(0, dtype=np.int64)
        nll = np.concatenate(pending.nll) if pending.nll else np.zeros(0)
        n_bytes, n_words = scored_text_extent(tokens, positions)
        self.totals[doc] = Totals.from_nll(nll, n_bytes, n_words)
        if on_document:
            on_document(doc)
        if self.unit == "word":
            yield doc, word_records(tokens, positions, nll)
