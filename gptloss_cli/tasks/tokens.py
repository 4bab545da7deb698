"""`tokens`: per-token and per-word records, streamed in document order.

A token record says which text the token covers (its owned span, see TokenizedDocument.owned_spans, so
`text[start:end] == token` and the records of a fully scored document concatenate to its text) and how
the model judged it. Word records sum the NLL of the tokens that make up each whitespace-separated word.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.distributed import SOLO, World
from ..core.engine import Progress, Scored, Scorer
from ..core.measures import StatsValues, nll_measure, stats_measure
from ..core.plan import WindowSettings
from ..core.totals import LN2, Totals, document_totals
from ..core.windows import TokenizedDocument
from ..core.words import word_sums
from ..inputs.document import Document
from ..models.spec import LoadedModel
from .job import Job

TOKENS_SCHEMA = "gptloss.tokens/v1"


@dataclass(frozen=True)
class TopChoice:
    token_id: int
    token: str
    logprob: float

    def to_dict(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "token": self.token, "logprob": self.logprob}


@dataclass(frozen=True)
class Record:
    """What token and word records share: where the text is, and its NLL (nats) in four units."""

    index: int
    start: int
    end: int
    nll: float

    @property
    def text(self) -> str:
        raise NotImplementedError

    @property
    def logprob(self) -> float:
        return -self.nll

    @property
    def bits(self) -> float:
        return self.nll / LN2

    @property
    def prob(self) -> float:
        return math.exp(-self.nll)

    def losses(self) -> dict[str, float]:
        return {"logprob": self.logprob, "nll": self.nll, "bits": self.bits, "prob": self.prob}


@dataclass(frozen=True)
class TokenRecord(Record):
    token_id: int = 0
    token: str = ""
    rank: int = 0
    entropy: float = 0.0
    context: int = 0
    top: tuple[TopChoice, ...] = ()

    @property
    def text(self) -> str:
        return self.token

    def to_dict(self) -> dict[str, Any]:
        head = {"index": self.index, "token_id": self.token_id, "token": self.token, "start": self.start}
        return {
            **head,
            "end": self.end,
            **self.losses(),
            "rank": self.rank,
            "entropy": self.entropy,
            "context": self.context,
            "top": [t.to_dict() for t in self.top],
        }


@dataclass(frozen=True)
class WordRecord(Record):
    word: str = ""
    tokens: int = 0
    scored_tokens: int = 0

    @property
    def text(self) -> str:
        return self.word

    def to_dict(self) -> dict[str, Any]:
        head = {"index": self.index, "word": self.word, "start": self.start, "end": self.end}
        return {**head, "tokens": self.tokens, "scored_tokens": self.scored_tokens, **self.losses()}


AnyRecord = TokenRecord | WordRecord


def token_records(
    tokens: TokenizedDocument, part: Scored, pieces: Callable[[list[int]], list[str]]
) -> list[TokenRecord]:
    """One record per scored token of `part` (measured with stats_measure), in position order."""
    text = tokens.document.text
    starts, ends = tokens.owned_spans()  # (n,), (n,)
    stats = part.values_as(StatsValues)
    top_ids, top_logprobs = stats.top_ids, stats.top_logprobs  # (k, K), (k, K)
    k = top_ids.shape[1]
    top_texts = pieces(top_ids.ravel().tolist()) if top_ids.size else []
    records = []
    for j, pos in enumerate(part.positions.tolist()):
        start, end = int(starts[pos]), int(ends[pos])
        top = tuple(
            TopChoice(int(tid), top_texts[j * k + i], float(lp))
            for i, (tid, lp) in enumerate(zip(top_ids[j], top_logprobs[j], strict=True))
        )
        records.append(
            TokenRecord(
                index=pos,
                start=start,
                end=end,
                nll=float(part.nll[j]),
                token_id=int(tokens.ids[pos]),
                token=text[start:end],
                rank=int(stats.rank[j]),
                entropy=float(stats.entropy[j]),
                context=int(part.context[j]),
                top=top,
            )
        )
    return records


def word_records(tokens: TokenizedDocument, positions: np.ndarray, nll: np.ndarray) -> list[WordRecord]:
    """One record per word with at least one scored token: its text, offsets, and summed NLL."""
    text = tokens.document.text
    words, count, scored, total = word_sums(tokens, positions, nll)
    return [
        WordRecord(w, start, end, float(total[w]), text[start:end], int(count[w]), int(scored[w]))
        for w, (start, end) in enumerate(words)
        if scored[w]
    ]


@dataclass(frozen=True)
class Chunk:
    """Records of one document as they are made: a window's token records, or a document's word records. The
    last chunk of each document carries its totals (and may hold no record)."""

    doc: int  # the document's index in the run
    records: list[AnyRecord]
    totals: Totals | None = None  # on the document's last chunk: its totals

    @property
    def done(self) -> bool:
        """Whether this is the document's last chunk."""
        return self.totals is not None


class TokenRun(Job):
    """Records of several documents with one model, produced as the windows are scored."""

    def __init__(
        self,
        loaded: LoadedModel,
        documents: Sequence[Document],
        settings: WindowSettings,
        *,
        top_k: int = 5,
        unit: str = "token",
        described: dict[str, Any] | None = None,
        world: World = SOLO,
    ) -> None:
        """Tokenize and plan `documents` for `loaded`.

        Args:
            loaded: The model.
            documents: What it scores.
            settings: The windows.
            top_k: How many of the model's top choices each token record lists.
            unit: "token" (a record per token) or "word" (a record per whitespace-separated word).
            described: The header's `input` block: the dataset and columns read (None for files).
            world: The ranks that share the work (core.distributed).
        """
        super().__init__(loaded, documents, settings, world)
        self.described = described
        self.top_k = top_k
        self.unit = unit

    def header(self) -> dict[str, Any]:
        settings = {**self.settings_dict(), "top_k": self.top_k, "unit": self.unit}
        head = {"schema": TOKENS_SCHEMA, "model": self.loaded.info.to_dict(), "settings": settings}
        return head if self.described is None else {**head, "input": self.described}

    def chunks(self, progress: Progress | None = None) -> Iterator[Chunk]:
        """The documents' chunks in document order. Token records come a window at a time, word records once
        per document, in its last chunk, which also carries its totals. With several ranks, only rank 0 builds
        records (the others score their share and get every document's totals)."""
        words = self.unit == "word"  # words need NLL only
        softmax = self.plan.peer_softmax
        measure = nll_measure(self.loaded, softmax) if words else stats_measure(self.loaded, self.top_k, softmax)
        pending: list[Scored] = []
        current = 0
        scorer = Scorer(measure, self.loaded.info.device, self.world)
        for window, part in scorer.windows(self.tokenized, self.plan, progress):
            while current < window.doc:
                yield self._last(current, pending)
                pending, current = [], current + 1
            pending.append(part)
            if not words and self.world.leader:
                yield Chunk(current, list(token_records(self.tokenized[current], part, self.loaded.tokenizer.pieces)))
        while current < len(self.documents):
            yield self._last(current, pending)
            pending, current = [], current + 1

    def _last(self, doc: int, pending: list[Scored]) -> Chunk:
        """A document's last chunk: its totals, and its word records when the unit is words."""
        tokens = self.tokenized[doc]
        positions = np.concatenate([p.positions for p in pending]) if pending else np.zeros(0, dtype=np.int64)
        nll = np.concatenate([p.nll for p in pending]) if pending else np.zeros(0)
        records: list[AnyRecord] = []
        if self.unit == "word" and self.world.leader:
            records = list(word_records(tokens, positions, nll))
        return Chunk(doc, records, document_totals(tokens, positions, nll))
