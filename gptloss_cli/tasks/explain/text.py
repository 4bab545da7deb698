"""`explain --text`: every position of a text, what the model predicted there, and the loss so far."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...core.plan import WindowSettings
from ...errors import GptlossError
from ...inputs.document import Document
from ...models.spec import LoadedModel, ModelInfo
from ..tokens import TokenRecord, TokenRun
from .prediction import SCHEMA, finite, safe_exp


@dataclass(frozen=True)
class ExplainPosition:
    """A token record with the running mean NLL over the positions so far and its perplexity exp(mean)."""

    record: TokenRecord
    running_mean_nll: float
    running_perplexity: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.record.to_dict(),
            "running_mean_nll": self.running_mean_nll,
            "running_perplexity": self.running_perplexity,
        }


@dataclass(frozen=True, eq=False)
class TextExplanation:
    """Every position of a text: what the model predicted there, and the loss so far."""

    text: str
    model: ModelInfo
    settings: dict[str, Any]
    positions: list[ExplainPosition]

    @property
    def mean_nll(self) -> float:
        return self.positions[-1].running_mean_nll

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema": SCHEMA, "input": "text", "model": self.model.to_dict()}
        data["settings"] = self.settings
        data |= {"text": self.text, "positions": [p.to_dict() for p in self.positions], "mean_nll": self.mean_nll}
        return data | {"perplexity": finite(safe_exp(self.mean_nll))}


def with_running_means(records: list[TokenRecord]) -> list[ExplainPosition]:
    """Each record with the running mean NLL over positions so far and its perplexity exp(mean)."""
    out, total = [], 0.0
    for i, record in enumerate(records, start=1):
        total += record.nll
        mean = total / i
        out.append(ExplainPosition(record, mean, finite(safe_exp(mean))))
    return out


def explain_text(
    loaded: LoadedModel, text: str, *, settings: WindowSettings | None = None, top_k: int = 5
) -> TextExplanation:
    """Score `text` with the same machinery as `tokens`, adding running means.

    Args:
        loaded: The model.
        text: What it scores, as one document.
        settings: The windows (default: the model's context, BOS when the tokenizer has one).
        top_k: How many of the model's top choices each position lists.
    """
    document = Document(text=text, source="<text>")
    run = TokenRun(loaded, [document], settings or WindowSettings(), top_k=top_k, unit="token")
    if run.tokens_to_score() == 0:
        raise GptlossError("--text: nothing to score (no token has a preceding token or BOS to be predicted from)")
    records = [r for chunk in run.chunks() for r in chunk.records if isinstance(r, TokenRecord)]
    return TextExplanation(text, loaded.info, run.header()["settings"], with_running_means(records))
