"""What per-token losses are used for beyond the totals: loss by context position (long-context curves) and
per-document membership scores (Min-K% Prob, Min-K%++, zlib ratio), defined once here (README "Analyses")."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .totals import Totals
from .windows import TokenizedDocument


@dataclass(frozen=True)
class PositionBuckets:
    """Scored tokens grouped by how many tokens they saw before them (context, BOS included): bucket b holds
    context in [b·width, (b + 1)·width). Sums only, so documents (and run files) add up exactly."""

    width: int
    tokens: tuple[int, ...]
    nll_sum: tuple[float, ...]
    nll_sq_sum: tuple[float, ...]

    @classmethod
    def of(cls, context: np.ndarray, nll: np.ndarray, width: int) -> PositionBuckets:
        index = np.asarray(context, dtype=np.int64) // width  # (k,)
        n = int(index.max()) + 1 if len(index) else 0
        nll = np.asarray(nll, dtype=np.float64)
        sums = [math.fsum(nll[index == b].tolist()) for b in range(n)]
        squares = [math.fsum((nll[index == b] ** 2).tolist()) for b in range(n)]
        return cls(width, tuple(np.bincount(index, minlength=n).tolist()), tuple(sums), tuple(squares))

    @classmethod
    def combine(cls, parts: Sequence[PositionBuckets], width: int) -> PositionBuckets:
        n = max((len(p.tokens) for p in parts), default=0)

        def column(values: list[tuple[float, ...]]) -> tuple[float, ...]:
            return tuple(math.fsum(v[b] for v in values if b < len(v)) for b in range(n))

        tokens = tuple(sum(p.tokens[b] for p in parts if b < len(p.tokens)) for b in range(n))
        return cls(width, tokens, column([p.nll_sum for p in parts]), column([p.nll_sq_sum for p in parts]))

    def rows(self) -> list[dict[str, Any]]:
        """One row per bucket: its context range, tokens, mean NLL, PPL and the mean's standard error."""
        out = []
        for b, (n, s, ss) in enumerate(zip(self.tokens, self.nll_sum, self.nll_sq_sum, strict=True)):
            t = Totals(n, s, 0, 0, ss)
            ci = t.perplexity_ci95
            row: dict[str, Any] = {"context_from": b * self.width, "context_to": (b + 1) * self.width}
            out.append(
                row
                | {"tokens": n, "nll_sum": s}
                | {"nll_sq_sum": ss, "mean_nll": t.mean_nll, "perplexity": t.perplexity}
                | {"stderr_mean_nll": t.stderr_mean_nll, "perplexity_ci95": None if ci is None else list(ci)}
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "buckets": self.rows()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PositionBuckets:
        rows = data["buckets"]
        tokens = tuple(int(r["tokens"]) for r in rows)
        sums = tuple(float(r["nll_sum"]) for r in rows)
        return cls(int(data["width"]), tokens, sums, tuple(float(r["nll_sq_sum"]) for r in rows))


def smallest_mean(values: np.ndarray, k: float) -> float | None:
    """Mean of the ⌈k·n⌉ smallest of n values (at least one); None when there are none."""
    n = len(values)
    if n == 0:
        return None
    count = min(n, max(1, math.ceil(k * n - 1e-9)))  # 0.7 x 10 is 7.000000000000001 in floats: 7, not 8
    return math.fsum(np.partition(np.asarray(values, dtype=np.float64), count - 1)[:count].tolist()) / count


@dataclass(frozen=True)
class Membership:
    """Per-document membership (contamination) scores over the n scored tokens, ℓ_t = log p(x_t | x_<t):
    min_k_prob, the mean of the ⌈k·n⌉ smallest ℓ_t; min_k_plus_plus, the same of z_t = (ℓ_t − μ_t) / σ_t
    (positions with σ_t = 0 left out); zlib_ratio, the mean NLL over the zlib-compressed length (bytes) of the
    scored text. Each None where undefined."""

    k: float
    min_k_prob: float | None
    min_k_plus_plus: float | None
    zlib_ratio: float | None
    zlib_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Membership:
        return cls(
            float(data["k"]), data["min_k_prob"], data["min_k_plus_plus"], data["zlib_ratio"], int(data["zlib_bytes"])
        )


def membership(
    tokens: TokenizedDocument, positions: np.ndarray, nll: np.ndarray, mean: np.ndarray, sd: np.ndarray, k: float
) -> Membership:
    """The scores of one document from its scored tokens' NLL and the distributions' μ and σ (core.moments)."""
    logp = -np.asarray(nll, dtype=np.float64)  # (n,)
    spread = np.asarray(sd, dtype=np.float64)  # (n,)
    defined = spread > 0
    z = (logp[defined] - np.asarray(mean, dtype=np.float64)[defined]) / spread[defined]
    text = scored_text(tokens, positions)
    compressed = len(zlib.compress(text.encode("utf-8", "surrogatepass"))) if text else 0
    ratio = None
    if len(logp) and compressed:
        ratio = -math.fsum(logp.tolist()) / len(logp) / compressed
    return Membership(k, smallest_mean(logp, k), smallest_mean(z, k), ratio, compressed)


def scored_text(tokens: TokenizedDocument, positions: np.ndarray) -> str:
    """The text the scored tokens own (TokenizedDocument.owned_spans), in order: the whole text when all are."""
    text = tokens.document.text
    starts, ends = tokens.owned_spans()
    return "".join(text[starts[p] : ends[p]] for p in np.asarray(positions, dtype=np.int64).tolist())
