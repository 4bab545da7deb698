"""The library's entry points: score documents with a model, get typed results."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import __version__
from .engine import DocumentLosses, Plan, Progress, Scorer, WindowSettings, make_plan
from .inputs import Document
from .models import DEFAULT_MODEL, Device, Dtype, LoadedModel, ModelInfo, load_model
from .stats import Totals, scored_text_extent
from .windows import tokenize

SCORE_SCHEMA = "gptloss.score/v1"


@dataclass(frozen=True)
class DocumentScore:
    source: str
    totals: Totals
    losses: DocumentLosses  # per-token detail, not serialised by `score`

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, **self.totals.to_dict()}


@dataclass(frozen=True)
class ScoreResult:
    model: ModelInfo
    plan: Plan
    documents: list[DocumentScore]
    total: Totals

    def settings(self) -> dict[str, Any]:
        return settings_dict(self.plan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCORE_SCHEMA,
            "model": self.model.to_dict(),
            "settings": self.settings(),
            "documents": [d.to_dict() for d in self.documents],
            "total": self.total.to_dict(),
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


def score_documents(
    loaded: LoadedModel,
    documents: Sequence[Document],
    settings: WindowSettings | None = None,
    progress: Progress | None = None,
    on_tokenized: Progress | None = None,
) -> ScoreResult:
    """Score each document with an already loaded model.

    `on_tokenized` is called once with the total number of tokens to score, before
    any forward pass; `progress` after each batch with the tokens it scored.
    """
    settings = settings or WindowSettings()
    plan = make_plan(loaded, settings)
    tokenized = [tokenize(loaded.tokenizer, doc) for doc in documents]
    if on_tokenized:
        first = 0 if plan.bos_token_id is not None else 1
        on_tokenized(sum(max(0, len(t) - first) for t in tokenized))
    losses = Scorer(loaded).score(tokenized, plan, settings.padding_side, progress)
    scores = []
    for doc, loss in zip(documents, losses, strict=True):
        n_bytes, n_words = scored_text_extent(loss.tokens, loss.positions)
        scores.append(DocumentScore(doc.source, Totals.from_nll(loss.nll, n_bytes, n_words), loss))
    all_nll = np.concatenate([s.losses.nll for s in scores]) if scores else np.zeros(0)
    total = Totals.from_nll(all_nll, sum(s.totals.bytes for s in scores), sum(s.totals.words for s in scores))
    return ScoreResult(model=loaded.info, plan=plan, documents=scores, total=total)


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
