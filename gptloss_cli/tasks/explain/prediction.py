"""`explain`: the loss of one prediction, step by step: softmax, -log p, cross-entropy,
perplexity, MSE and KL divergence on the user's own numbers.

float64 throughout and math.fsum for every sum, so the values match a hand computation to the last digits.
Infinite values (a target class given probability 0) are kept as inf here and become null in `to_dict`,
whose JSON must stay strict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import UsageError

SCHEMA = "gptloss.explain/v1"
SUM_TOLERANCE = 1e-6  # how far probabilities may sum from 1


def parse_numbers(text: str, flag: str) -> np.ndarray:
    """A comma-separated list of finite numbers: "0.1,0.3,0.6" -> array([0.1, 0.3, 0.6]), shape (n,)."""
    values = []
    for part in text.split(","):
        item = part.strip()
        try:
            value = float(item)
        except ValueError:
            shown = repr(item) if item else "an empty item"
            raise UsageError(f"{flag}: {shown} is not a number (give comma-separated numbers: 0.1,0.3,0.6)") from None
        if not math.isfinite(value):
            raise UsageError(f"{flag}: {item} is not a finite number")
        values.append(value)
    return np.array(values, dtype=np.float64)


def check_probs(probs: np.ndarray) -> None:
    """Refuse a negative probability or a sum further than SUM_TOLERANCE from 1."""
    for i, p in enumerate(probs.tolist()):
        if p < 0:
            raise UsageError(f"--probs: class {i} is {p:g}; a probability cannot be negative")
    total = math.fsum(probs.tolist())
    if abs(total - 1) > SUM_TOLERANCE:
        raise UsageError(
            f"--probs: the probabilities sum to {total:.10g}, not 1 (±{SUM_TOLERANCE:g}); raw scores go in --logits"
        )


@dataclass(frozen=True, eq=False)
class Target:
    """The target distribution t (shape (n,), sums to 1), and how the user gave it."""

    weights: np.ndarray
    given: np.ndarray  # as typed, before normalising
    target_class: int | None = None  # set when a class index was given
    normalised: bool = False


def parse_target(text: str, n: int) -> Target:
    """A class index ("2") or one weight per class ("0,0,1", "0.5,0.5,0"); other sums are normalised to 1."""
    items = text.split(",")
    if len(items) == 1:
        try:
            index = int(items[0].strip())
        except ValueError:
            raise UsageError(
                f"--target: {items[0].strip()!r} is not a class index (a whole number from 0 to {n - 1}); "
                f"a target vector needs {n} comma-separated weights"
            ) from None
        if not 0 <= index < n:
            raise UsageError(f"--target {index}: no such class; the {n} classes are numbered 0 to {n - 1}")
        weights = np.zeros(n)
        weights[index] = 1.0
        return Target(weights, weights, target_class=index)
    given = parse_numbers(text, "--target")
    if len(given) != n:
        raise UsageError(f"--target has {len(given)} weights but the distribution has {n} classes")
    for i, w in enumerate(given.tolist()):
        if w < 0:
            raise UsageError(f"--target: class {i} is {w:g}; a target weight cannot be negative")
    try:
        total = math.fsum(given.tolist())
    except OverflowError:
        total = math.inf
    if not math.isfinite(total):
        raise UsageError("--target: the weights are too large to add up; give weights like 1,1,0 or 0.5,0.5,0")
    if total == 0:
        raise UsageError("--target: all weights are zero; give at least one positive weight")
    if abs(total - 1) <= SUM_TOLERANCE:
        return Target(given, given)
    return Target(given / total, given, normalised=True)


def safe_exp(x: float) -> float:
    """exp(x), or inf where it is beyond float range."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def finite(x: float) -> float | None:
    """x for JSON: None stands for an infinity."""
    return x if math.isfinite(x) else None


@dataclass(frozen=True, eq=False)
class Softmax:
    """softmax(logits) computed stably: p = exp(logit - max) / Σ exp(logit - max), each step kept."""

    logits: np.ndarray  # (n,)
    max: float
    shifted: np.ndarray  # (n,) logit - max: all <= 0, so exp never overflows
    exps: np.ndarray  # (n,)
    sum: float

    @classmethod
    def of(cls, logits: np.ndarray) -> Softmax:
        top = float(logits.max())
        with np.errstate(over="ignore"):  # logits ±1e308 apart: the gap is -inf and its exp 0
            shifted = logits - top
        exps = np.exp(shifted)
        return cls(logits, top, shifted, exps, math.fsum(exps.tolist()))

    def probs(self) -> np.ndarray:
        return self.exps / self.sum

    def neg_log_probs(self) -> np.ndarray:
        """-log p = log Σ - (logit - max): finite even where p underflows to 0."""
        return math.log(self.sum) - self.shifted


@dataclass(frozen=True, eq=False)
class Explanation:
    """One prediction p against a target t, with every per-class term and the summary values."""

    probs: np.ndarray  # (n,)
    neg_log_p: np.ndarray  # (n,) -log p, inf where p = 0
    target: Target
    softmax: Softmax | None = None  # set when logits were given

    @classmethod
    def from_probs(cls, probs: np.ndarray, target: Target) -> Explanation:
        check_probs(probs)
        with np.errstate(divide="ignore"):
            return cls(probs, 0.0 - np.log(probs), target)  # 0.0 -: -log 1 is 0, not -0

    @classmethod
    def from_logits(cls, logits: np.ndarray, target: Target) -> Explanation:
        softmax = Softmax.of(logits)
        return cls(softmax.probs(), softmax.neg_log_probs(), target, softmax)

    def _terms(self) -> tuple[list[float], list[float], list[float], list[float]]:
        """Per class: t·(-log p), (p - t)², t·log(t/p) and -t·log t; a term with t = 0 is 0 (0·log 0 = 0)."""
        t, p, nlp = self.target.weights.tolist(), self.probs.tolist(), self.neg_log_p.tolist()
        ce = [ti * li if ti > 0 else 0.0 for ti, li in zip(t, nlp, strict=True)]
        sq = [(pi - ti) ** 2 for pi, ti in zip(p, t, strict=True)]
        kl = [ti * (math.log(ti) + li) if ti > 0 else 0.0 for ti, li in zip(t, nlp, strict=True)]
        h = [-ti * math.log(ti) if ti > 0 else 0.0 for ti in t]
        return ce, sq, kl, h

    @property
    def cross_entropy(self) -> float:
        """-Σ t log p, in nats."""
        return math.fsum(self._terms()[0])

    @property
    def perplexity(self) -> float:
        return safe_exp(self.cross_entropy)

    @property
    def mse(self) -> float:
        """mean((p - t)²) over the classes."""
        return math.fsum(self._terms()[1]) / len(self.probs)

    @property
    def kl_divergence(self) -> float:
        """KL(t‖p) = Σ t log(t/p) = cross-entropy - H(t)."""
        return math.fsum(self._terms()[2])

    @property
    def target_entropy(self) -> float:
        """H(t) = -Σ t log t: the least cross-entropy any p can reach against this target."""
        return math.fsum(self._terms()[3])

    def rows(self) -> list[dict[str, Any]]:
        """One dict per class with every intermediate value (inf as is)."""
        ce, sq, kl, _ = self._terms()
        rows = []
        for i, p in enumerate(self.probs.tolist()):
            row: dict[str, Any] = {"class": i}
            if self.softmax is not None:
                row |= {
                    "logit": float(self.softmax.logits[i]),
                    "shifted_logit": float(self.softmax.shifted[i]),
                    "exp": float(self.softmax.exps[i]),
                }
            row |= {"p": p, "t": float(self.target.weights[i]), "neg_log_p": float(self.neg_log_p[i])}
            rows.append(row | {"ce_term": ce[i], "squared_error": sq[i], "kl_term": kl[i]})
        return rows

    def notes(self) -> list[str]:
        """Plain-language remarks on the input: normalisation and infinities."""
        out = []
        if self.target.normalised:
            given = ", ".join(f"{w:g}" for w in self.target.given.tolist())
            out.append(f"target [{given}] sums to {math.fsum(self.target.given.tolist()):g}: normalised to sum 1")
        t, nlp = self.target.weights.tolist(), self.neg_log_p.tolist()
        zero = [str(i) for i, (ti, li) in enumerate(zip(t, nlp, strict=True)) if ti > 0 and math.isinf(li)]
        if zero:
            out.append(
                f"p gives class {', '.join(zero)} probability 0 but the target does not: cross-entropy, KL and "
                "perplexity are infinite (null in JSON)"
            )
        elif not math.isfinite(self.perplexity):
            out.append("perplexity exp(cross-entropy) is beyond float range (null in JSON)")
        if not all(math.isfinite(x) for x in nlp):
            out.append("−log p is infinite where p = 0 (null in JSON)")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The gptloss.explain/v1 JSON object: strict, infinities as null (see `notes`)."""
        data: dict[str, Any] = {"schema": SCHEMA, "input": "probs" if self.softmax is None else "logits"}
        if self.softmax is not None:
            data["logits"] = self.softmax.logits.tolist()
            data["softmax"] = {
                "max": self.softmax.max,
                "shifted": self.softmax.shifted.tolist(),
                "exp": self.softmax.exps.tolist(),
                "sum": self.softmax.sum,
            }
        data |= {"probs": self.probs.tolist(), "target": self.target.weights.tolist()}
        if self.target.target_class is not None:
            data["target_class"] = self.target.target_class
        data["target_normalised"] = self.target.normalised
        if self.target.normalised:
            data["target_given"] = self.target.given.tolist()
        data |= {
            "cross_entropy": self.cross_entropy,
            "perplexity": self.perplexity,
            "mse": self.mse,
            "kl_divergence": self.kl_divergence,
            "target_entropy": self.target_entropy,
        }
        return _strict(data | {"rows": self.rows(), "notes": self.notes()})


def _strict(value: Any) -> Any:
    """`value` with every non-finite float, however deep, replaced by None."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return finite(value) if isinstance(value, float) else value
