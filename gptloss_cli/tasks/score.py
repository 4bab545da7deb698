"""`score`: perplexity, bits per byte and friends per document and in total, as typed results."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from ..core.batches import document_windows_of
from ..core.distributed import SOLO, Shard, World
from ..core.engine import Progress, Scorer
from ..core.measures import moments_measure, nll_measure
from ..core.plan import Plan, WindowSettings
from ..core.presets import PeerCounts
from ..core.totals import Bootstrap, Totals, document_totals
from ..inputs.document import Document
from ..models.loader import load_model
from ..models.spec import DEFAULT_MODEL, Device, Dtype, LoadedModel, ModelInfo
from .accumulator import Accumulator, CorpusTotal, DocumentScore
from .analyses import Analyses, analyse, with_analyses
from .job import QUIET, Job, Tracker, settings_dict
from .protocols import ProtocolCard, protocol_card

SCORE_SCHEMA = "gptloss.score/v1"


@dataclass(frozen=True)
class ScoreResult:
    model: ModelInfo
    plan: Plan
    documents: list[DocumentScore]
    corpus: CorpusTotal  # the total, as the run's Accumulator computed it
    described: dict[str, Any] | None = None  # the input block: the dataset and columns read, when not files
    card: ProtocolCard | None = None
    analyses: Analyses = Analyses()

    @property
    def total(self) -> Totals:
        return self.corpus.totals

    def settings(self) -> dict[str, Any]:
        return with_analyses(settings_dict(self.plan, self.card), self.analyses)

    def total_dict(self) -> dict[str, Any]:
        return self.corpus.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCORE_SCHEMA,
            "model": self.model.to_dict(),
            "settings": self.settings(),
            **({"input": self.described} if self.described is not None else {}),
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
            counts = self.counts(i, loss.positions, loss.nll)
            found = analyse(self.analyses, loss, self.documents[i].label)
            yield DocumentScore(self.documents[i].source, totals, loss if keep_losses else None, i, counts, found)

    def counts(self, index: int, positions: np.ndarray, nll: np.ndarray) -> PeerCounts:
        """Document `index`'s counts behind the preset's peer figures, from its scored tokens."""
        windows = document_windows_of(self.plan, index, self.tokenized[index])
        return self.plan.preset.counts(self.documents[index].text, windows, positions, nll)

    def restored(self, score: DocumentScore) -> DocumentScore:
        """A document's score read back from a run file (which keeps only the counts that need its losses),
        with the counts that follow from its text and windows."""
        none = np.zeros(0, dtype=np.int64)
        structure = self.counts(score.index, none, none.astype(np.float64)).structure()
        return replace(score, counts=PeerCounts.combine([structure, score.counts]))

    def accumulator(self, scores: Sequence[DocumentScore] = ()) -> Accumulator:
        """An accumulator for this run's total, holding `scores`."""
        return Accumulator(self.plan.preset, self.analyses.by_position, scores)

    def run(
        self, tracker: Tracker = QUIET, bootstrap: Bootstrap | None = None, described: dict[str, Any] | None = None
    ) -> ScoreResult:
        """Every document scored (per-token losses not kept), reporting to `tracker`."""
        tracker.start(self.tokens_to_score(), self.documents_to_score())
        total = self.accumulator()
        for score in self.scores(tracker.advance, keep_losses=False):
            tracker.document()
            total.update(score)
        return self.result(total, bootstrap, described)

    def result(
        self, total: Accumulator, bootstrap: Bootstrap | None = None, described: dict[str, Any] | None = None
    ) -> ScoreResult:
        """The result of the documents `total` holds."""
        card = self.card
        if self.within is not None:  # a shard's card counts its own documents
            card = protocol_card(self.plan, [self.tokenized[i] for i in sorted(self.within)])
        corpus = total.compute(bootstrap)
        return ScoreResult(self.loaded.info, self.plan, total.documents(), corpus, described, card, self.analyses)


def score_documents(
    loaded: LoadedModel,
    documents: Sequence[Document],
    settings: WindowSettings | None = None,
    *,
    progress: Progress | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    analyses: Analyses | None = None,
    world: World = SOLO,
) -> ScoreResult:
    """Score each document with an already loaded model.

    Args:
        loaded: the model (models.loader.load_model).
        documents: what to score; a document's spans, when set, are the only tokens scored.
        settings: windows, batch and protocol (None: the defaults, gptloss's protocol).
        progress: called after each batch with the number of tokens it scored.
        bootstrap: > 0 adds a document-bootstrap 95% interval of the corpus perplexity over that many
            resamples, drawn with `seed`.
        analyses: loss by context position and membership scores (None: neither).
        world: the ranks sharing the work (core.distributed); every rank gets the whole result.
    """
    run = ScoreRun(loaded, documents, settings or WindowSettings(), world, analyses=analyses)
    return run.result(run.accumulator(list(run.scores(progress))), Bootstrap(bootstrap, seed) if bootstrap else None)


def score_texts(
    texts: str | Sequence[str],
    model: str = DEFAULT_MODEL,
    settings: WindowSettings | None = None,
    *,
    device: Device = Device.auto,
    dtype: Dtype = Dtype.auto,
) -> ScoreResult:
    """Load `model` and score one text or several (sources are named text-1, text-2, ...).

    Args:
        texts: one text, or several.
        model: a bundled alias, a .gguf file, a model folder or a hub id.
        settings: as for score_documents.
        device: where to run the model (auto: cuda, else mps, else cpu).
        dtype: the weights' and activations' dtype (auto: float32 on CPU, bfloat16 on CUDA).
    """
    items = [texts] if isinstance(texts, str) else list(texts)
    docs = [Document(text=t, source=f"text-{i + 1}") for i, t in enumerate(items)]
    return score_documents(load_model(model, device=device, dtype=dtype), docs, settings)
