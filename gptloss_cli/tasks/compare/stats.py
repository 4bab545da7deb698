"""The statistics `compare` reports over paired units: B − A deltas (and llama-perplexity's ln PPL ratio),
the per-position comparison of two distributions, and the spans that differ most."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.totals import Bootstrap, stderr

PERCENTILES: tuple[tuple[str, float], ...] = (
    *(("max", 100.0), ("99.9", 99.9), ("99", 99.0), ("95", 95.0), ("90", 90.0)),
    *(("50", 50.0), ("10", 10.0), ("5", 5.0), ("1", 1.0), ("0.1", 0.1), ("min", 0.0)),
)
DELTA_P_PERCENTILES: tuple[tuple[str, float], ...] = (
    *PERCENTILES[:5],
    ("75", 75.0),
    ("50", 50.0),
    ("25", 25.0),
    *PERCENTILES[6:],
)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def percentiles(values: np.ndarray, which: tuple[tuple[str, float], ...] = PERCENTILES) -> dict[str, float] | None:
    """Named percentiles (numpy's linear interpolation between order statistics)."""
    if len(values) == 0:
        return None
    points = np.percentile(values, [q for _, q in which])
    return {name: float(v) for (name, _), v in zip(which, points, strict=True)}


def binoculars(nll_b: np.ndarray, cross_entropy: np.ndarray | None) -> float | None:
    """Binoculars with A observing and B performing: B's mean NLL over the mean of -Σ P_A log P_B at the same
    positions; None without a position, or when that cross-entropy is not positive."""
    if cross_entropy is None or len(cross_entropy) == 0:
        return None
    cross = float(cross_entropy.mean())
    return float(nll_b.mean()) / cross if cross > 0 else None


@dataclass(frozen=True)
class LogPplRatio:
    """llama-perplexity's paired statistics of two NLL series a (base) and b over the same units: ln PPL =
    the mean, its uncertainty u = sqrt((E[x²] - E[x]²) / (n - 1)), the covariance of the means
    (E[ab] - E[a]E[b]) / (n - 1); ln(PPL_B/PPL_A) = mean(b) - mean(a) ± sqrt(u_a² + u_b² - 2 cov) and
    Cor(ln PPL_A, ln PPL_B) = cov / (u_a u_b)."""

    ln_ppl_a: float
    ln_ppl_a_stderr: float | None
    ln_ppl_b: float
    ln_ppl_b_stderr: float | None
    ln_ppl_covariance: float | None
    ln_ppl_ratio: float
    ln_ppl_ratio_stderr: float | None
    ln_ppl_correlation: float | None

    @classmethod
    def of(cls, a: np.ndarray, b: np.ndarray) -> LogPplRatio | None:
        n = len(a)
        if n == 0:
            return None
        mean_a, mean_b = float(a.mean()), float(b.mean())
        if n < 2:
            return cls(mean_a, None, mean_b, None, None, mean_b - mean_a, None, None)
        u_a, u_b = stderr(a) or 0.0, stderr(b) or 0.0  # = sqrt((E[x²] - E[x]²) / (n - 1)), llama.cpp's u
        cov = (float((a * b).mean()) - mean_a * mean_b) / (n - 1)
        spread = math.sqrt(max(0.0, u_a**2 + u_b**2 - 2 * cov))
        correlation = cov / (u_a * u_b) if u_a > 0 and u_b > 0 else None
        return cls(mean_a, u_a, mean_b, u_b, cov, mean_b - mean_a, spread, correlation)


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
    llama_cpp: LogPplRatio | None = None

    @classmethod
    def of(cls, nll_a: np.ndarray, nll_b: np.ndarray, unit: str) -> Paired:
        delta = nll_b - nll_a
        n = len(delta)
        corr = None
        if n > 1 and np.std(nll_a) > 0 and np.std(nll_b) > 0:
            corr = _finite(float(np.corrcoef(nll_a, nll_b)[0, 1]))
        mean = float(delta.mean()) if n else None
        ratio = _finite(math.exp(mean)) if mean is not None and mean < 700 else None
        return cls(unit, n, mean, stderr(delta), ratio, corr, llama_cpp=LogPplRatio.of(nll_a, nll_b))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "unit": self.unit,
            "n": self.n,
            "mean_delta_nll": self.mean_delta_nll,
            "stderr": self.stderr,
            "ppl_ratio": self.ppl_ratio,
            "correlation": self.correlation,
            **(dict(vars(self.llama_cpp)) if self.llama_cpp is not None else {}),
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
    mean_kld_reverse: float | None = None  # KL(P_B || P_A)
    mean_kld_reverse_stderr: float | None = None

    @classmethod
    def of(
        cls, kld: np.ndarray, delta_p: np.ndarray, same_top1: np.ndarray, reverse: np.ndarray | None = None
    ) -> Distribution | None:
        if len(kld) == 0:
            return None
        agree = float(same_top1.mean())
        return cls(
            mean_kld=float(kld.mean()),
            mean_kld_stderr=stderr(kld),
            kld_percentiles=percentiles(kld) or {},
            delta_p_mean=float(delta_p.mean()),
            delta_p_stderr=stderr(delta_p),
            delta_p_percentiles=percentiles(delta_p, DELTA_P_PERCENTILES) or {},
            rms_delta_p=float(np.sqrt(np.mean(delta_p**2))),
            same_top1=agree,
            same_top1_stderr=stderr(same_top1.astype(np.float64)),  # = sqrt(p (1 - p) / (n - 1))
            mean_kld_reverse=None if reverse is None or len(reverse) == 0 else float(reverse.mean()),
            mean_kld_reverse_stderr=None if reverse is None else stderr(reverse),
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
