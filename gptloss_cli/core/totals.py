"""Aggregates of per-token NLL: one accounting header (N, Σnll, Σnll², bytes, words) feeds every metric.

Definitions, as the README's "What is computed" gives them: mean_nll = S/N, perplexity = exp(S/N),
bits_per_token = S/(N ln 2), bits_per_byte = S/(bytes ln 2), word_perplexity = exp(S/words),
stderr_mean_nll = sd(nll)/sqrt(N); a corpus total adds its documents' sums (a micro average).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .windows import TokenizedDocument

LN2 = math.log(2.0)
Z95 = 1.959963984540054
WORD = re.compile(r"\S+")  # a word: a run of non-whitespace


@dataclass(frozen=True)
class Bootstrap:
    """A document bootstrap: how many resamples, with which seed."""

    resamples: int
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"resamples": self.resamples, "seed": self.seed, "unit": "document"}


def stderr(values: np.ndarray) -> float | None:
    """Standard error of the mean, sd(ddof=1) / sqrt(n); None below two values."""
    n = int(values.shape[0])
    return float(np.std(values, ddof=1) / math.sqrt(n)) if n >= 2 else None


@dataclass(frozen=True)
class Totals:
    """N tokens with NLL sum S (nats) and sum of squares SS over B bytes and W words of scored text.

    These sums are all a total needs: a corpus total adds its documents' (Totals.combine).
    """

    tokens_scored: int
    nll_sum: float
    bytes: int
    words: int
    nll_sq_sum: float = 0.0

    @classmethod
    def from_nll(cls, nll: np.ndarray, n_bytes: int, n_words: int) -> Totals:
        nll = np.asarray(nll, dtype=np.float64)
        return cls(
            tokens_scored=int(nll.shape[0]),
            nll_sum=math.fsum(nll.tolist()),
            bytes=n_bytes,
            words=n_words,
            nll_sq_sum=math.fsum((nll * nll).tolist()),
        )

    @classmethod
    def combine(cls, parts: Sequence[Totals]) -> Totals:
        """The total of several parts; exactly rounded sums, so the order of the parts does not matter."""
        return cls(
            tokens_scored=sum(t.tokens_scored for t in parts),
            nll_sum=math.fsum(t.nll_sum for t in parts),
            bytes=sum(t.bytes for t in parts),
            words=sum(t.words for t in parts),
            nll_sq_sum=math.fsum(t.nll_sq_sum for t in parts),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Totals:
        """Read back what to_dict wrote."""
        return cls(
            tokens_scored=int(data["tokens_scored"]),
            nll_sum=float(data["nll_sum"]),
            bytes=int(data["bytes"]),
            words=int(data["words"]),
            nll_sq_sum=float(data["nll_sq_sum"]),
        )

    @property
    def stderr_mean_nll(self) -> float | None:
        """sd(nll_i) / sqrt(N), sd with N - 1; None below two tokens."""
        n = self.tokens_scored
        if n < 2:
            return None
        variance = max(0.0, (self.nll_sq_sum - self.nll_sum * self.nll_sum / n) / (n - 1))
        return math.sqrt(variance / n)

    @property
    def mean_nll(self) -> float | None:
        return self.nll_sum / self.tokens_scored if self.tokens_scored else None

    @property
    def perplexity(self) -> float | None:
        return exp_or_none(self.mean_nll)

    @property
    def bits_per_token(self) -> float | None:
        return None if self.mean_nll is None else self.mean_nll / LN2

    @property
    def bits_per_byte(self) -> float | None:
        return self.nll_sum / (self.bytes * LN2) if self.tokens_scored and self.bytes else None

    @property
    def word_perplexity(self) -> float | None:
        return exp_or_none(self.nll_sum / self.words) if self.tokens_scored and self.words else None

    @property
    def perplexity_ci95(self) -> tuple[float, float] | None:
        """exp(mean ± 1.96 SE): treats tokens as independent, so it is narrower than the truth."""
        mean, se = self.mean_nll, self.stderr_mean_nll
        high = None if mean is None or se is None else exp_or_none(mean + Z95 * se)
        if mean is None or se is None or high is None:
            return None
        return (math.exp(mean - Z95 * se), high)

    def to_dict(self) -> dict[str, Any]:
        ci = self.perplexity_ci95
        return {
            "tokens_scored": self.tokens_scored,
            "nll_sum": self.nll_sum,
            "mean_nll": self.mean_nll,
            "perplexity": self.perplexity,
            "bits_per_token": self.bits_per_token,
            "bytes": self.bytes,
            "bits_per_byte": self.bits_per_byte,
            "words": self.words,
            "word_perplexity": self.word_perplexity,
            "stderr_mean_nll": self.stderr_mean_nll,
            "perplexity_ci95": None if ci is None else list(ci),
            "nll_sq_sum": self.nll_sq_sum,
        }


def exp_or_none(x: float | None) -> float | None:
    """exp(x), or None for no value or one that would overflow (a perplexity of e^700 says nothing)."""
    if x is None:
        return None
    return math.exp(x) if x < 700 else None


def scored_text_extent(tokens: TokenizedDocument, positions: np.ndarray) -> tuple[int, int]:
    """UTF-8 bytes and whitespace words of the text whose tokens were scored.

    A character counts when the token owning it (TokenizedDocument.owned_spans) was scored,
    so a fully scored document counts all its bytes. A word counts when the token owning
    its last character was scored.
    """
    text = tokens.document.text
    n_chars = len(text)
    if len(positions) == 0 or n_chars == 0:
        return 0, 0
    starts, ends = tokens.owned_spans()  # (n,), (n,)
    delta = np.zeros(n_chars + 1, dtype=np.int64)  # (chars + 1,)
    np.add.at(delta, starts[positions], 1)
    np.add.at(delta, ends[positions], -1)
    scored = np.cumsum(delta[:-1]) > 0  # (chars,) character is owned by a scored token
    codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # (chars,)
    utf8_len = 1 + (codepoints >= 0x80) + (codepoints >= 0x800) + (codepoints >= 0x10000)  # (chars,)
    n_bytes = int(utf8_len[scored].sum())
    word_ends = np.fromiter((m.end() - 1 for m in WORD.finditer(text)), dtype=np.int64)  # (words,)
    n_words = int(scored[word_ends].sum()) if len(word_ends) else 0
    return n_bytes, n_words


def document_totals(tokens: TokenizedDocument, positions: np.ndarray, nll: np.ndarray) -> Totals:
    """The totals of one document's scored tokens: their NLL, and the bytes and words of the text they own."""
    n_bytes, n_words = scored_text_extent(tokens, positions)
    return Totals.from_nll(nll, n_bytes, n_words)


def macro_mean_perplexity(parts: Sequence[Totals]) -> float | None:
    """Mean of the per-document perplexities (each document weighs the same), over documents with a
    scored token. Not the corpus perplexity, which weighs each token the same."""
    values = [t.perplexity for t in parts if t.tokens_scored]
    if not values or any(v is None for v in values):
        return None
    return math.fsum(v for v in values if v is not None) / len(values)


def bootstrap_ci95(parts: Sequence[Totals], resamples: int, seed: int) -> tuple[float, float] | None:
    """95% percentile interval of the corpus perplexity, resampling documents with replacement.

    Documents, not tokens, are resampled: tokens of one document are not independent, documents
    roughly are. Reproducible for a given seed and list of documents.
    """
    scored = [t for t in parts if t.tokens_scored]
    counts = np.array([t.tokens_scored for t in scored], dtype=np.float64)  # (D,)
    sums = np.array([t.nll_sum for t in scored], dtype=np.float64)  # (D,)
    return bootstrap_exp_ci95(counts, sums, resamples, seed)


def bootstrap_exp_ci95(counts: np.ndarray, sums: np.ndarray, resamples: int, seed: int) -> tuple[float, float] | None:
    """2.5th and 97.5th percentiles of exp(Σ sums / Σ counts) over `resamples` draws of the D documents
    with replacement; counts and sums (D,) per document, every count positive. None below two documents."""
    d = len(counts)
    if d < 2 or resamples < 1:
        return None
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // d)  # resamples drawn at a time: (chunk, D) counts in memory
    means = []
    for first in range(0, resamples, chunk):
        rows = min(chunk, resamples - first)
        draws = rng.multinomial(d, np.full(d, 1.0 / d), size=rows)  # (rows, D) times each document is drawn
        means.append((draws @ sums) / (draws @ counts))  # (rows,)
    low, high = np.percentile(np.concatenate(means), [2.5, 97.5])
    if high >= 700:
        return None
    return math.exp(low), math.exp(high)
