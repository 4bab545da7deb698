"""score's analyses of the per-token losses: loss by context position, membership scores, and how well each
per-document score separates labelled documents (AUROC, TPR at a fixed FPR). Definitions: core.analyses and
core.detection; README "Analyses"."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..core.analyses import Membership, PositionBuckets, membership
from ..core.detection import auroc, tpr_at_fpr
from ..core.totals import Totals

if TYPE_CHECKING:
    from ..core.engine import DocumentLosses

# Which way each per-document score points to label 1 (a member of the training data, say).
POSITIVE_WHEN = {
    "mean_nll": "lower",
    "perplexity": "lower",
    "min_k_prob": "higher",
    "min_k_plus_plus": "higher",
    "zlib_ratio": "lower",
    "mean_nll_a": "lower",
    "mean_nll_b": "lower",
    "delta_mean_nll": "lower",
    "binoculars": "lower",
}
FPRS = (0.01, 0.05)


@dataclass(frozen=True)
class Analyses:
    """What score computes beside the totals: buckets of `by_position` tokens of context, and membership
    scores with k = `min_k` (None: not asked for)."""

    by_position: int | None = None
    min_k: float | None = None

    def to_dict(self) -> dict[str, Any] | None:
        """The `analyses` entry of a run's settings (None when there are none, so other runs keep their shape)."""
        out: dict[str, Any] = {}
        if self.by_position is not None:
            out["by_position"] = self.by_position
        if self.min_k is not None:
            out["membership"] = {"min_k": self.min_k}
        return out or None


@dataclass(frozen=True)
class DocumentAnalyses:
    by_position: PositionBuckets | None = None
    membership: Membership | None = None
    label: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.label is not None:
            out["label"] = self.label
        if self.membership is not None:
            out["membership"] = self.membership.to_dict()
        if self.by_position is not None:
            out["by_position"] = self.by_position.to_dict()
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> DocumentAnalyses:
        """Read back what to_dict wrote into a run file's document line."""
        buckets, member = record.get("by_position"), record.get("membership")
        return cls(
            None if buckets is None else PositionBuckets.from_dict(buckets),
            None if member is None else Membership.from_dict(member),
            record.get("label"),
        )


NONE = DocumentAnalyses()


def analyse(analyses: Analyses, loss: DocumentLosses, label: int | None) -> DocumentAnalyses:
    """One document's analyses from its scored tokens (with μ and σ of log p when membership is asked for)."""
    buckets = None
    if analyses.by_position is not None:
        buckets = PositionBuckets.of(loss.context, loss.nll, analyses.by_position)
    member = None
    if analyses.min_k is not None and loss.tokens is not None:
        from ..core.measures import MomentValues  # at run time only: reading results needs no torch

        moments = loss.values if isinstance(loss.values, MomentValues) else MomentValues.empty()
        mean, sd = moments.mean_logp, moments.sd_logp
        member = membership(loss.tokens, loss.positions, loss.nll, mean, sd, analyses.min_k)
    return DocumentAnalyses(buckets, member, label)


@dataclass(frozen=True)
class Detection:
    """One per-document score's separation of label 1 from label 0."""

    score: str
    positive_when: str
    documents: tuple[int, int]  # (label 1, label 0) with a value of this score
    auroc: float | None
    tpr_at_fpr: list[dict[str, float | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "positive_when": self.positive_when,
            "documents": {"label_1": self.documents[0], "label_0": self.documents[1]},
            "auroc": self.auroc,
            "tpr_at_fpr": self.tpr_at_fpr,
        }


def detection(scores: Mapping[str, Sequence[float | None]], labels: Sequence[int | None]) -> list[Detection]:
    """For each named per-document score: AUROC and TPR at each FPR in FPRS, with the threshold (in the
    score's own units: label 1 when the score is at or beyond it, in the direction POSITIVE_WHEN gives).
    Documents without a label or a value of the score are left out of that score."""
    out = []
    for name, values in scores.items():
        keep = [(float(v), int(y)) for v, y in zip(values, labels, strict=True) if v is not None and y is not None]
        keep = [(v, y) for v, y in keep if math.isfinite(v)]
        sign = 1.0 if POSITIVE_WHEN[name] == "higher" else -1.0
        oriented = np.array([sign * v for v, _ in keep], dtype=np.float64)
        y = np.array([label for _, label in keep], dtype=np.int64)
        rates = []
        for fpr in FPRS:
            found = tpr_at_fpr(oriented, y, fpr)
            threshold = None if found is None or not math.isfinite(found[1]) else sign * found[1]
            rates.append({"fpr": fpr, "tpr": None if found is None else found[0], "threshold": threshold})
        counts = (int((y == 1).sum()), int((y == 0).sum()))
        out.append(Detection(name, POSITIVE_WHEN[name], counts, auroc(oriented, y), rates))
    return out


def with_analyses(settings: dict[str, Any], analyses: Analyses) -> dict[str, Any]:
    """A result's settings with its analyses (none: unchanged)."""
    asked = analyses.to_dict()
    return settings if asked is None else {**settings, "analyses": asked}


class HasAnalyses(Protocol):
    @property
    def totals(self) -> Totals: ...

    @property
    def analyses(self) -> DocumentAnalyses: ...


def document_scores(documents: Sequence[HasAnalyses]) -> dict[str, list[float | None]]:
    """The per-document scores detection looks at: mean NLL and PPL, and the membership scores when computed."""
    scores: dict[str, list[float | None]] = {
        "mean_nll": [d.totals.mean_nll for d in documents],
        "perplexity": [d.totals.perplexity for d in documents],
    }
    if documents and all(d.analyses.membership is not None for d in documents):
        members = [d.analyses.membership for d in documents if d.analyses.membership is not None]
        scores["min_k_prob"] = [m.min_k_prob for m in members]
        scores["min_k_plus_plus"] = [m.min_k_plus_plus for m in members]
        scores["zlib_ratio"] = [m.zlib_ratio for m in members]
    return scores


def detection_warnings(found: list[Detection] | None) -> list[str]:
    """What to say when labels were given but a class has no document (AUROC and TPR are null then)."""
    if not found:
        return []
    ones, zeros = found[0].documents
    if ones and zeros:
        return []
    missing = "1" if not ones else "0"
    return [f"--label-column: no document is labelled {missing}, so AUROC and TPR at FPR are null"]


def corpus_analyses(
    documents: Sequence[HasAnalyses], width: int | None
) -> tuple[PositionBuckets | None, list[Detection] | None]:
    """The total's loss by position (the documents' buckets added) and, with labels, the detection metrics."""
    buckets = [d.analyses.by_position for d in documents if d.analyses.by_position is not None]
    by_position = None if width is None else PositionBuckets.combine(buckets, width)
    labels = [d.analyses.label for d in documents]
    found = detection(document_scores(documents), labels) if any(y is not None for y in labels) else None
    return by_position, found
