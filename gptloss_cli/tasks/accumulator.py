"""How a total is assembled, the one way for every path: `score`, `score --resume`, `--protocol all`, the ranks of
a distributed run and `gptloss merge` all feed documents' scores to an Accumulator and ask it for the total.

As a torchmetrics metric: `update` adds a document, `merge` joins another accumulator (a shard, a resumed
file), `compute` gives the corpus total. It keeps each document's sums (never a running mean), and computes
from them in input order with exactly rounded sums: the total does not depend on the order documents came
in nor on how they were split, so a merged or resumed run gives an uninterrupted run's numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.analyses import PositionBuckets
from ..core.presets import PeerCounts, PeerFigures, Preset
from ..core.totals import Bootstrap, Totals, bootstrap_ci95, macro_mean_perplexity
from ..errors import GptlossError
from .analyses import NONE, Detection, DocumentAnalyses, corpus_analyses

if TYPE_CHECKING:
    from ..core.engine import DocumentLosses


@dataclass(frozen=True)
class DocumentScore:
    """One document's score: its sums, the preset's counts behind the peer's figures, its analyses."""

    source: str
    totals: Totals
    losses: DocumentLosses | None = None  # per-token detail, not serialised by `score`; None when read back
    index: int = 0  # position in the input
    counts: PeerCounts = PeerCounts()  # what the preset's peer figures add up over documents
    analyses: DocumentAnalyses = NONE  # by position, membership scores, the label

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, **self.totals.to_dict(), **self.analyses.to_dict()}


@dataclass(frozen=True)
class CorpusTotal:
    """The corpus totals (micro: every token weighs the same), the macro mean of the documents'
    perplexities, and the bootstrap interval when asked for."""

    totals: Totals
    documents: int
    macro_mean_perplexity: float | None
    bootstrap: Bootstrap | None = None
    bootstrap_ci95: tuple[float, float] | None = None
    peer: PeerFigures | None = None  # the protocol's peer's own figures
    by_position: PositionBuckets | None = None
    detection: list[Detection] | None = None  # with labelled documents

    def to_dict(self) -> dict[str, Any]:
        out = {
            **self.totals.to_dict(),
            "documents": self.documents,
            "macro_mean_perplexity": self.macro_mean_perplexity,
            **({} if self.peer is None else self.peer.to_dict()),
        }
        if self.by_position is not None:
            out["by_position"] = self.by_position.to_dict()
        if self.detection is not None:
            out["detection"] = [d.to_dict() for d in self.detection]
        if self.bootstrap is not None:
            out["bootstrap_ci95"] = None if self.bootstrap_ci95 is None else list(self.bootstrap_ci95)
            out["bootstrap"] = self.bootstrap.to_dict()
        return out


class Accumulator:
    """Documents' scores under one preset, to a corpus total (see the module docstring).

    by_position: the width of the loss-by-position buckets when they were asked for (None: not).
    """

    def __init__(self, preset: Preset, by_position: int | None = None, scores: Iterable[DocumentScore] = ()) -> None:
        self.preset = preset
        self.by_position = by_position
        self._documents: dict[int, DocumentScore] = {}
        self._counts: list[PeerCounts] = []  # counts kept by no document's line (a shard's total has them)
        for score in scores:
            self.update(score)

    def __len__(self) -> int:
        return len(self._documents)

    def update(self, score: DocumentScore) -> None:
        """Add one document's score (each document once)."""
        if score.index in self._documents:
            raise GptlossError(f"document {score.index} ({score.source}) is counted twice")
        self._documents[score.index] = score

    def add_counts(self, counts: PeerCounts) -> None:
        """Add peer counts that come with no document (a shard's total line holds its chunks, words, bytes)."""
        self._counts.append(counts)

    def merge(self, other: Accumulator) -> Accumulator:
        """A new accumulator holding both; refused when they were made alike but share a document."""
        if other.preset is not self.preset or other.by_position != self.by_position:
            raise GptlossError(f"cannot add a {other.preset.name} total to a {self.preset.name} one")
        joined = Accumulator(self.preset, self.by_position, self._documents.values())
        for score in other._documents.values():
            joined.update(score)
        joined._counts = [*self._counts, *other._counts]
        return joined

    def documents(self) -> list[DocumentScore]:
        """The documents' scores in input order."""
        return [self._documents[i] for i in sorted(self._documents)]

    def compute(self, bootstrap: Bootstrap | None = None) -> CorpusTotal:
        """The corpus total; with `bootstrap`, its document-bootstrap interval. Empty: nulls, never NaN."""
        ordered = self.documents()
        parts = [d.totals for d in ordered]
        total = Totals.combine(parts)
        ci = None if bootstrap is None else bootstrap_ci95(parts, bootstrap.resamples, bootstrap.seed)
        counts = PeerCounts.combine([*(d.counts for d in ordered), *self._counts])
        peer = self.preset.peer_numbers(total, counts)
        by_position, found = corpus_analyses(ordered, self.by_position)
        macro = macro_mean_perplexity(parts)
        return CorpusTotal(total, len(parts), macro, bootstrap, ci, peer, by_position, found)
