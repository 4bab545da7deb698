"""Aggregates of per-token NLL: one accounting header feeds every metric (see METRICS.md)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .windows import TokenizedDocument

LN2 = math.log(2.0)
Z95 = 1.959963984540054
WORD = re.compile(r"\S+")  # a word: a run of non-whitespace


def stderr(values: np.ndarray) -> float | None:
    """Standard error of the mean, sd(ddof=1) / sqrt(n); None below two values."""
    n = int(values.shape[0])
    return float(np.std(values, ddof=1) / math.sqrt(n)) if n >= 2 else None


@dataclass(frozen=True)
class Totals:
    """N tokens with NLL sum S (nats) over B bytes and W words of scored text."""

    tokens_scored: int
    nll_sum: float
    bytes: int
    words: int
    stderr_mean_nll: float | None  # sd(nll_i) / sqrt(N); None below two tokens

    @classmethod
    def from_nll(cls, nll: np.ndarray, n_bytes: int, n_words: int) -> Totals:
        n = int(nll.shape[0])
        se = stderr(nll)
        return cls(
            tokens_scored=n,
            nll_sum=float(np.sum(nll, dtype=np.float64)),
            bytes=n_bytes,
            words=n_words,
            stderr_mean_nll=se,
        )

    @property
    def mean_nll(self) -> float | None:
        return self.nll_sum / self.tokens_scored if self.tokens_scored else None

    @property
    def perplexity(self) -> float | None:
        return _exp(self.mean_nll)

    @property
    def bits_per_token(self) -> float | None:
        return None if self.mean_nll is None else self.mean_nll / LN2

    @property
    def bits_per_byte(self) -> float | None:
        return self.nll_sum / (self.bytes * LN2) if self.tokens_scored and self.bytes else None

    @property
    def word_perplexity(self) -> float | None:
        return _exp(self.nll_sum / self.words) if self.tokens_scored and self.words else None

    @property
    def perplexity_ci95(self) -> tuple[float, float] | None:
        """exp(mean ± 1.96 SE): treats tokens as independent, so it is narrower than the truth."""
        mean, se = self.mean_nll, self.stderr_mean_nll
        high = None if mean is None or se is None else _exp(mean + Z95 * se)
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
        }


def _exp(x: float | None) -> float | None:
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
