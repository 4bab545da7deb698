"""The library's entry points: score documents with a model, get typed results."""

from __future__ import annotations

import platform
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from . import __version__
from .engine import DocumentLosses, Plan, Progress, Scorer, WindowSettings, make_plan, tokens_to_score
from .inputs import Document
from .models import DEFAULT_MODEL, Device, Dtype, LoadedModel, ModelInfo, load_model
from .stats import Totals, bootstrap_ci95, macro_mean_perplexity, scored_text_extent
from .windows import tokenize

SCORE_SCHEMA = "gptloss.score/v1"


@dataclass(frozen=True)
class DocumentScore:
    source: str
    totals: Totals
    losses: DocumentLosses | None = None  # per-token detail, not serialised by `score`; None when read back
    index: int = 0  # position in the input

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, **self.totals.to_dict()}


@dataclass(frozen=True)
class ScoreResult:
    model: ModelInfo
    plan: Plan
    documents: list[DocumentScore]
    total: Totals
    bootstrap: int = 0  # document resamples for total.bootstrap_ci95; 0: none
    seed: int = 0
    inputs: dict[str, Any] | None = None  # the dataset and columns read, when not files

    def settings(self) -> dict[str, Any]:
        return settings_dict(self.plan)

    def total_dict(self) -> dict[str, Any]:
        """The corpus totals (micro: every token weighs the same), the macro mean of the documents'
        perplexities, and the bootstrap interval when asked for."""
        return dict(self._total)

    @cached_property
    def _total(self) -> dict[str, Any]:
        """total_dict, computed once: the table and the run file's last line both show it, and a
        bootstrap over many documents takes a while."""
        parts = [d.totals for d in self.documents]
        out = {**self.total.to_dict(), "documents": len(parts), "macro_mean_perplexity": macro_mean_perplexity(parts)}
        if self.bootstrap:
            ci = bootstrap_ci95(parts, self.bootstrap, self.seed)
            out["bootstrap_ci95"] = None if ci is None else list(ci)
            out["bootstrap"] = {"resamples": self.bootstrap, "seed": self.seed, "unit": "document"}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCORE_SCHEMA,
            "model": self.model.to_dict(),
            "settings": self.settings(),
            **({"input": self.inputs} if self.inputs is not None else {}),
            "documents": [d.to_dict() for d in self.documents],
            "total": self.total_dict(),
        }


def settings_dict(plan: Plan) -> dict[str, Any]:
    import torch
    import transformers

    return {
        **asdict(plan),
        "versions": {
            "gptloss": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }


class ScoreRun:
    """Documents tokenized and planned for one model, scored as a stream of finished documents."""

    def __init__(self, loaded: LoadedModel, documents: Sequence[Document], settings: WindowSettings) -> None:
        self.loaded = loaded
        self.documents = list(documents)
        self.settings = settings
        self.plan = make_plan(loaded, settings)
        self.tokenized = [tokenize(loaded.tokenizer, doc) for doc in self.documents]

    def tokens_to_score(self, skip: frozenset[int] = frozenset()) -> int:
        return tokens_to_score(self.tokenized, self.plan, skip)

    def scores(
        self, progress: Progress | None = None, skip: frozenset[int] = frozenset(), keep_losses: bool = True
    ) -> Iterator[DocumentScore]:
        """Each document's score as soon as it is done (not in input order); `skip`: see Scorer.windows."""
        stream = Scorer(self.loaded).documents(self.tokenized, self.plan, self.settings.padding_side, progress, skip)
        for i, loss in stream:
            n_bytes, n_words = scored_text_extent(loss.tokens, loss.positions)
            totals = Totals.from_nll(loss.nll, n_bytes, n_words)
            yield DocumentScore(self.documents[i].source, totals, loss if keep_losses else None, i)

    def result(self, scores: Sequence[DocumentScore], bootstrap: int = 0, seed: int = 0) -> ScoreResult:
        ordered = sorted(scores, key=lambda d: d.index)
        total = Totals.combine([d.totals for d in ordered])
        return ScoreResult(self.loaded.info, self.plan, ordered, total, bootstrap, seed)


def score_documents(
    loaded: LoadedModel,
    documents: Sequence[Document],
    settings: WindowSettings | None = None,
    progress: Progress | None = None,
    on_tokenized: Progress | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> ScoreResult:
    """Score each document with an already loaded model.

    `on_tokenized` is called once with the total number of tokens to score, before
    any forward pass; `progress` after each batch with the tokens it scored.
    `bootstrap` > 0 adds a document-bootstrap interval of the corpus perplexity.
    """
    run = ScoreRun(loaded, documents, settings or WindowSettings())
    if on_tokenized:
        on_tokenized(run.tokens_to_score())
    return run.result(list(run.scores(progress)), bootstrap, seed)


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
