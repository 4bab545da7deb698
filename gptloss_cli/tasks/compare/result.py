"""What `compare` gives: per document and in total, paired deltas, distribution statistics and the
spans that differ most, as frozen dataclasses whose to_dict() is the gptloss.compare/v1 JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ...core.plan import Plan
from ...core.totals import Bootstrap, Totals, bootstrap_exp_ci95
from ...models.spec import ModelInfo
from ..analyses import Detection, detection
from ..job import settings_dict
from ..protocols import ProtocolCard
from .stats import Difference, Distribution, Paired, binoculars

COMPARE_SCHEMA = "gptloss.compare/v1"
# The percentiles llama-perplexity lists for KLD, and for Δp (which adds the quartiles).


@dataclass(frozen=True, eq=False)
class DocumentPair:
    """One document's comparison; spans are (start, end) character offsets, one per paired unit."""

    source: str
    text: str
    totals_a: Totals
    totals_b: Totals
    spans: np.ndarray  # (n, 2)
    nll_a: np.ndarray  # (n,)
    nll_b: np.ndarray  # (n,)
    kld: np.ndarray | None = None  # (n,) same vocabulary only
    delta_p: np.ndarray | None = None
    same_top1: np.ndarray | None = None
    label: int | None = None  # from --label-column
    kld_reverse: np.ndarray | None = None  # (n,) KL(P_B || P_A), same vocabulary only
    cross_entropy: np.ndarray | None = None  # (n,) -Σ P_A log P_B, same vocabulary only

    @property
    def binoculars(self) -> float | None:
        """Binoculars with A observing and B performing, over this document's positions."""
        return binoculars(self.nll_b, self.cross_entropy)

    @property
    def delta_mean_nll(self) -> float | None:
        """Mean of B's NLL minus A's over the paired units (the reference-model difference), None without any."""
        return float(np.mean(self.nll_b - self.nll_a)) if len(self.nll_a) else None

    def paired(self, unit: str) -> Paired:
        return Paired.of(self.nll_a, self.nll_b, unit)

    def distribution(self) -> Distribution | None:
        if self.kld is None or self.delta_p is None or self.same_top1 is None:
            return None
        return Distribution.of(self.kld, self.delta_p, self.same_top1, self.kld_reverse)

    def span_records(self) -> list[dict[str, Any]]:
        """Each paired unit in text order: its span, both NLLs, Δ NLL and (one vocabulary) KL(P_A‖P_B)."""
        kl: list[float | None] = [None] * len(self.nll_a) if self.kld is None else self.kld.tolist()
        rows = zip(self.spans.tolist(), self.nll_a.tolist(), self.nll_b.tolist(), kl, strict=True)
        return [{"start": s, "end": e, "nll_a": a, "nll_b": b, "delta_nll": b - a, "kl": k} for (s, e), a, b, k in rows]

    def top_differences(self, n: int) -> list[Difference]:
        order = np.argsort(-np.abs(self.nll_b - self.nll_a), kind="stable")[:n]
        return [
            Difference(
                self.source,
                int(self.spans[i, 0]),
                int(self.spans[i, 1]),
                self.text[int(self.spans[i, 0]) : int(self.spans[i, 1])],
                float(self.nll_a[i]),
                float(self.nll_b[i]),
            )
            for i in order
        ]


@dataclass(frozen=True, eq=False)
class CompareResult:
    a: ModelInfo
    b: ModelInfo
    plan: Plan
    same_vocabulary: bool
    documents: list[DocumentPair]
    top_n: int = 10
    bootstrap: Bootstrap | None = None  # document resamples for the interval of B/A
    card: ProtocolCard | None = None  # model A's windows (B's are the same when they share a tokenizer)
    binoculars: bool = False  # report Binoculars (A observes, B performs)

    @property
    def binoculars_score(self) -> float | None:
        """Binoculars over all positions (the documents' pooled), when asked for and the models share a vocabulary."""
        if not self.binoculars or not self.same_vocabulary:
            return None
        return binoculars(self._all("nll_b"), self._all("cross_entropy"))

    @property
    def unit(self) -> str:
        return "token" if self.same_vocabulary else "word"

    def totals(self, side: str) -> Totals:
        """One model's corpus totals: its documents' combined, as score does."""
        return Totals.combine([d.totals_a if side == "a" else d.totals_b for d in self.documents])

    def _all(self, name: str) -> np.ndarray:
        arrays = [getattr(d, name) for d in self.documents]
        return np.concatenate(arrays) if arrays else np.zeros(0)

    @cached_property
    def paired(self) -> Paired:
        """Over all documents' paired units."""
        total = Paired.of(self._all("nll_a"), self._all("nll_b"), self.unit)
        if self.bootstrap is None:
            return total
        docs = [d for d in self.documents if len(d.nll_a)]
        counts = np.array([len(d.nll_a) for d in docs], dtype=np.float64)  # (D,)
        sums = np.array([math.fsum((d.nll_b - d.nll_a).tolist()) for d in docs])  # (D,)
        ci = bootstrap_exp_ci95(counts, sums, self.bootstrap.resamples, self.bootstrap.seed)
        return Paired(**{**vars(total), "bootstrap": self.bootstrap, "ppl_ratio_bootstrap_ci95": ci})

    @cached_property
    def distribution(self) -> Distribution | None:
        if not self.same_vocabulary:
            return None
        reverse = self._all("kld_reverse") if all(d.kld_reverse is not None for d in self.documents) else None
        return Distribution.of(self._all("kld"), self._all("delta_p"), self._all("same_top1"), reverse)

    def top_differences(self) -> list[Difference]:
        """The top_n spans with the largest |Δ NLL| over all documents."""
        tops = [t for d in self.documents for t in d.top_differences(self.top_n)]
        tops.sort(key=lambda t: -abs(t.delta_nll))
        return tops[: self.top_n]

    def to_dict(self) -> dict[str, Any]:
        dist = self.distribution
        return {
            "schema": COMPARE_SCHEMA,
            "a": {"model": self.a.to_dict(), "total": self.totals("a").to_dict()},
            "b": {"model": self.b.to_dict(), "total": self.totals("b").to_dict()},
            "settings": {
                **settings_dict(self.plan, self.card),
                "same_vocabulary": self.same_vocabulary,
                "top_n": self.top_n,
            },
            "documents": [self._document(d) for d in self.documents],
            "paired": self.paired.to_dict(),
            "distribution": None if dist is None else dist.to_dict(),
            "top_differences": [t.to_dict() for t in self.top_differences()],
            **({"detection": [x.to_dict() for x in self.detection]} if self.detection is not None else {}),
            **({"binoculars": self.binoculars_score} if self.binoculars else {}),
        }

    @cached_property
    def detection(self) -> list[Detection] | None:
        """With labelled documents: how well each model's mean NLL and their difference separate the labels."""
        labels = [d.label for d in self.documents]
        if all(y is None for y in labels):
            return None
        scores = {
            "mean_nll_a": [d.totals_a.mean_nll for d in self.documents],
            "mean_nll_b": [d.totals_b.mean_nll for d in self.documents],
            "delta_mean_nll": [d.delta_mean_nll for d in self.documents],
        }
        if self.binoculars:
            scores["binoculars"] = [d.binoculars for d in self.documents]
        return detection(scores, labels)

    def _document(self, d: DocumentPair) -> dict[str, Any]:
        dist = d.distribution()
        return {
            "source": d.source,
            **({"label": d.label} if d.label is not None else {}),
            "delta_mean_nll": d.delta_mean_nll,
            **({"binoculars": d.binoculars} if self.binoculars else {}),
            "a": d.totals_a.to_dict(),
            "b": d.totals_b.to_dict(),
            "paired": d.paired(self.unit).to_dict(),
            "distribution": None if dist is None else dist.to_dict(),
            "top_differences": [t.to_dict(with_source=False) for t in d.top_differences(self.top_n)],
        }


@dataclass(frozen=True)
class FailedCandidate:
    """A candidate that could not be loaded or compared, and why."""

    spec: str
    dtype: str  # as asked for (auto before a load)
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"b": {"model": {"spec": self.spec, "dtype": self.dtype}}, "error": self.error}
