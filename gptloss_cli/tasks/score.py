"""`score`: perplexity, bits per byte and friends per document and in total, as typed results."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..core.analyses import PositionBuckets
from ..core.batches import document_windows_of
from ..core.distributed import SOLO, Shard, World
from ..core.engine import DocumentLosses, Progress, Scorer
from ..core.measures import moments_measure, nll_measure
from ..core.plan import Plan, WindowSettings
from ..core.protocols import Protocol, recipe_sums
from ..core.totals import Bootstrap, Totals, bootstrap_ci95, document_totals, macro_mean_perplexity
from ..inputs.document import Document
from ..models.loader import load_model
from ..models.spec import DEFAULT_MODEL, Device, Dtype, LoadedModel, ModelInfo
from .analyses import NONE, Analyses, Detection, DocumentAnalyses, analyse, corpus_analyses, with_analyses
from .job import QUIET, Job, Tracker, settings_dict
from .protocols import PeerCounts, ProtocolCard, peer_numbers, protocol_card

SCORE_SCHEMA = "gptloss.score/v1"


@dataclass(frozen=True)
class DocumentScore:
    source: str
    totals: Totals
    losses: DocumentLosses | None = None  # per-token detail, not serialised by `score`; None when read back
    index: int = 0  # position in the input
    recipe: tuple[float, int] | None = None  # hf-stride: the recipe's (Σ window mean x count, Σ count)
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
    peer: dict[str, Any] | None = None  # the protocol's peer's own numbers, under its names
    by_position: PositionBuckets | None = None
    detection: list[Detection] | None = None  # with labelled documents

    def to_dict(self) -> dict[str, Any]:
        out = {
            **self.totals.to_dict(),
            "documents": self.documents,
            "macro_mean_perplexity": self.macro_mean_perplexity,
            **(self.peer or {}),
        }
        if self.by_position is not None:
            out["by_position"] = self.by_position.to_dict()
        if self.detection is not None:
            out["detection"] = [d.to_dict() for d in self.detection]
        if self.bootstrap is not None:
            out["bootstrap_ci95"] = None if self.bootstrap_ci95 is None else list(self.bootstrap_ci95)
            out["bootstrap"] = self.bootstrap.to_dict()
        return out


@dataclass(frozen=True)
class ScoreResult:
    model: ModelInfo
    plan: Plan
    documents: list[DocumentScore]
    total: Totals
    bootstrap: Bootstrap | None = None
    inputs: dict[str, Any] | None = None  # the dataset and columns read, when not files
    card: ProtocolCard | None = None
    texts: tuple[str, ...] = ()  # the documents' texts, for divisors that count raw words and bytes
    analyses: Analyses = Analyses()

    def settings(self) -> dict[str, Any]:
        return with_analyses(settings_dict(self.plan, self.card), self.analyses)

    @cached_property
    def corpus(self) -> CorpusTotal:
        """Computed once: the table and the run file's last line both show it, and a bootstrap over many
        documents takes a while."""
        parts = [d.totals for d in self.documents]
        ci = None if self.bootstrap is None else bootstrap_ci95(parts, self.bootstrap.resamples, self.bootstrap.seed)
        peer = None
        if self.card is not None:
            recipes = [d.recipe for d in self.documents if d.recipe is not None]
            recipe = (math.fsum(r[0] for r in recipes), sum(r[1] for r in recipes)) if recipes else None
            counts = PeerCounts.of_texts(self.texts, self.card.windows, recipe)
            peer = peer_numbers(self.plan.protocol, self.total, counts)
        by_position, found = corpus_analyses(self.documents, self.analyses.by_position)
        macro = macro_mean_perplexity(parts)
        return CorpusTotal(self.total, len(parts), macro, self.bootstrap, ci, peer, by_position, found)

    def total_dict(self) -> dict[str, Any]:
        return self.corpus.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCORE_SCHEMA,
            "model": self.model.to_dict(),
            "settings": self.settings(),
            **({"input": self.inputs} if self.inputs is not None else {}),
            "documents": [d.to_dict() for d in self.documents],
            "total": self.total_dict(),
        }


class ScoreRun(Job):
    """Documents tokenized and planned for one model, scored as a stream of finished documents; with a
    shard (I, N), only the I-th of N shares of the documents (Shard)."""

    def __init__(
        self,
        loaded: LoadedModel,
        documents: Sequence[Document],
        settings: WindowSettings,
        world: World = SOLO,
        shard: Shard | None = None,
        analyses: Analyses | None = None,
    ) -> None:
        super().__init__(loaded, documents, settings, world)
        self.shard = shard
        self.analyses = analyses or Analyses()

    def settings_dict(self) -> dict[str, Any]:
        return with_analyses(super().settings_dict(), self.analyses)

    @cached_property
    def within(self) -> frozenset[int] | None:
        """The documents this run scores: all (None), or its shard's."""
        if self.shard is None:
            return None
        return self.shard.documents([len(t) for t in self.tokenized])

    def documents_to_score(self, skip: frozenset[int] = frozenset()) -> int:
        """How many documents this run scores (those in `skip` left out)."""
        return len((set(range(len(self.documents))) if self.within is None else self.within) - skip)

    def tokens_to_score(self, skip: frozenset[int] = frozenset()) -> int:
        others = frozenset() if self.within is None else frozenset(range(len(self.documents))) - self.within
        return super().tokens_to_score(skip | others)

    def scores(
        self, progress: Progress | None = None, skip: frozenset[int] = frozenset(), keep_losses: bool = True
    ) -> Iterator[DocumentScore]:
        """Each document's score as soon as it is done (not in input order); `skip`: see Scorer.documents.
        With a shard, only its documents."""
        measure = moments_measure if self.analyses.min_k is not None else nll_measure
        scorer = Scorer(measure(self.loaded, self.plan.peer_softmax), self.loaded.info.device, self.world)
        for i, loss in scorer.documents(self.tokenized, self.plan, progress, skip, self.within):
            totals = document_totals(self.tokenized[i], loss.positions, loss.nll)
            recipe = None
            if self.plan.protocol is Protocol.hf_stride:
                recipe = recipe_sums(document_windows_of(self.plan, i, self.tokenized[i]), loss.positions, loss.nll)
            found = analyse(self.analyses, loss, self.documents[i].label)
            yield DocumentScore(self.documents[i].source, totals, loss if keep_losses else None, i, recipe, found)

    def run(
        self, tracker: Tracker = QUIET, bootstrap: Bootstrap | None = None, inputs: dict[str, Any] | None = None
    ) -> ScoreResult:
        """Every document scored (per-token losses not kept), reporting to `tracker`."""
        tracker.start(self.tokens_to_score(), self.documents_to_score())
        scores = []
        for score in self.scores(tracker.advance, keep_losses=False):
            tracker.document()
            scores.append(score)
        return self.result(scores, bootstrap, inputs)

    def result(
        self, scores: Sequence[DocumentScore], bootstrap: Bootstrap | None = None, inputs: dict[str, Any] | None = None
    ) -> ScoreResult:
        ordered = sorted(scores, key=lambda d: d.index)
        total = Totals.combine([d.totals for d in ordered])
        card = self.card
        if self.within is not None:  # a shard's card (and its peer numbers) count its own documents
            card = protocol_card(self.plan, [self.tokenized[i] for i in sorted(self.within)])
        texts = tuple(self.documents[d.index].text for d in ordered)
        return ScoreResult(self.loaded.info, self.plan, ordered, total, bootstrap, inputs, card, texts, self.analyses)


def score_documents(
    loaded: LoadedModel,
    documents: Sequence[Document],
    settings: WindowSettings | None = None,
    progress: Progress | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    analyses: Analyses | None = None,
    world: World = SOLO,
) -> ScoreResult:
    """Score each document with an already loaded model.

    `progress` is called after each batch with the tokens it scored; `bootstrap` > 0 adds a
    document-bootstrap interval of the corpus perplexity over that many resamples (with `seed`);
    `analyses`: loss by position and membership scores; `world`: the ranks sharing the work (every rank
    gets the whole result).
    """
    run = ScoreRun(loaded, documents, settings or WindowSettings(), world, analyses=analyses)
    return run.result(list(run.scores(progress)), Bootstrap(bootstrap, seed) if bootstrap else None)


def score_texts(
    texts: str | Sequence[str],
    model: str = DEFAULT_MODEL,
    settings: WindowSettings | None = None,
    device: Device = Device.auto,
    dtype: Dtype = Dtype.auto,
) -> ScoreResult:
    """Load `model` and score one text or several (sources are named text-1, text-2, ...)."""
    items = [texts] if isinstance(texts, str) else list(texts)
    docs = [Document(text=t, source=f"text-{i + 1}") for i, t in enumerate(items)]
    return score_documents(load_model(model, device=device, dtype=dtype), docs, settings)
