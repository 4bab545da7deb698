"""What `compare` gives: per document and in total, paired deltas, distribution statistics and the
spans that differ most, as frozen dataclasses whose to_dict() is the gptloss.compare/v1 JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..core.plan import Plan
from ..core.totals import Bootstrap, Totals, bootstrap_exp_ci95, stderr
from ..models.spec import ModelInfo
from .analyses import Detection, detection
from .job import settings_dict
from .protocols import ProtocolCard

COMPARE_SCHEMA = "gptloss.compare/v1"
PERCENTILES: tuple[tuple[str, float], ...] = (
    *(("max", 100.0), ("99.9", 99.9), ("99", 99.0), ("95", 95.0), ("90", 90.0)),
    *(("50", 50.0), ("10", 10.0), ("5", 5.0), ("1", 1.0), ("min", 0.0)),
)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def percentiles(values: np.ndarray) -> dict[str, float] | None:
    if len(values) == 0:
        return None
    points = np.percentile(values, [q for _, q in PERCENTILES])
    return {name: float(v) for (name, _), v in zip(PERCENTILES, points, strict=True)}


@dataclass(frozen=True)
class Paired:
    """B - A over paired units (tokens, or words across tokenizers): mean, its standard error, the PPL
    ratio exp(mean), the correlation of the two NLLs, and a document-bootstrap interval of the ratio."""

    unit: str
    n: int
    mean_delta_nll: float | None
    stderr: float | None
    ppl_ratio: float | None
    correlation: float | None
    bootstrap: Bootstrap | None = None
    ppl_ratio_bootstrap_ci95: tuple[float, float] | None = None

    @classmethod
    def of(cls, nll_a: np.ndarray, nll_b: np.ndarray, unit: str) -> Paired:
        delta = nll_b - nll_a
        n = len(delta)
        corr = None
        if n > 1 and np.std(nll_a) > 0 and np.std(nll_b) > 0:
            corr = _finite(float(np.corrcoef(nll_a, nll_b)[0, 1]))
        mean = float(delta.mean()) if n else None
        ratio = _finite(math.exp(mean)) if mean is not None and mean < 700 else None
        return cls(unit, n, mean, stderr(delta), ratio, corr)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unit": self.unit,
            "n": self.n,
            "mean_delta_nll": self.mean_delta_nll,
            "stderr": self.stderr,
            "ppl_ratio": self.ppl_ratio,
            "correlation": self.correlation,
        }
        if self.bootstrap is not None:
            ci = self.ppl_ratio_bootstrap_ci95
            out["ppl_ratio_bootstrap_ci95"] = None if ci is None else list(ci)
            out["bootstrap"] = self.bootstrap.to_dict()
        return out


@dataclass(frozen=True)
class Distribution:
    """Per-position comparison of the two next-token distributions (same vocabulary only)."""

    mean_kld: float
    mean_kld_stderr: float | None
    kld_percentiles: dict[str, float]
    delta_p_mean: float
    delta_p_stderr: float | None
    delta_p_percentiles: dict[str, float]
    rms_delta_p: float
    same_top1: float
    same_top1_stderr: float | None

    @classmethod
    def of(cls, kld: np.ndarray, delta_p: np.ndarray, same_top1: np.ndarray) -> Distribution | None:
        if len(kld) == 0:
            return None
        agree = float(same_top1.mean())
        return cls(
            mean_kld=float(kld.mean()),
            mean_kld_stderr=stderr(kld),
            kld_percentiles=percentiles(kld) or {},
            delta_p_mean=float(delta_p.mean()),
            delta_p_stderr=stderr(delta_p),
            delta_p_percentiles=percentiles(delta_p) or {},
            rms_delta_p=float(np.sqrt(np.mean(delta_p**2))),
            same_top1=agree,
            same_top1_stderr=math.sqrt(agree * (1 - agree) / len(kld)) if len(kld) > 1 else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class Difference:
    """A paired span with a large |Δ NLL|."""

    source: str
    start: int
    end: int
    text: str
    nll_a: float
    nll_b: float

    @property
    def delta_nll(self) -> float:
        return self.nll_b - self.nll_a

    def to_dict(self, with_source: bool = True) -> dict[str, Any]:
        where = {"source": self.source} if with_source else {}
        span = {"start": self.start, "end": self.end, "text": self.text}
        return {**where, **span, "nll_a": self.nll_a, "nll_b": self.nll_b, "delta_nll": self.delta_nll}


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

    @property
    def delta_mean_nll(self) -> float | None:
        """Mean of B's NLL minus A's over the paired units (the reference-model difference), None without any."""
        return float(np.mean(self.nll_b - self.nll_a)) if len(self.nll_a) else None

    def paired(self, unit: str) -> Paired:
        return Paired.of(self.nll_a, self.nll_b, unit)

    def distribution(self) -> Distribution | None:
        if self.kld is None or self.delta_p is None or self.same_top1 is None:
            return None
        return Distribution.of(self.kld, self.delta_p, self.same_top1)

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
        return Distribution.of(self._all("kld"), self._all("delta_p"), self._all("same_top1"))

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
        return detection(scores, labels)

    def _document(self, d: DocumentPair) -> dict[str, Any]:
        dist = d.distribution()
        return {
            "source": d.source,
            **({"label": d.label} if d.label is not None else {}),
            "delta_mean_nll": d.delta_mean_nll,
            "a": d.totals_a.to_dict(),
            "b": d.totals_b.to_dict(),
            "paired": d.paired(self.unit).to_dict(),
            "distribution": None if dist is None else dist.to_dict(),
            "top_differences": [t.to_dict(with_source=False) for t in d.top_differences(self.top_n)],
        }
