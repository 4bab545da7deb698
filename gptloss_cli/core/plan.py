"""Window settings as the user gave them, resolved against a model into the Plan every result reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import GptlossError
from ..models.spec import LoadedModel
from .windows import BosPolicy, resolve_bos

DEFAULT_CONTEXT_CAP = 2048


@dataclass(frozen=True)
class WindowSettings:
    """What the user asked for; None means the model's default."""

    max_length: int | None = None
    stride: int | None = None
    bos: BosPolicy = BosPolicy.auto
    batch_size: int = 8
    padding_side: str = "right"


@dataclass(frozen=True)
class Plan:
    """Settings resolved against a model. padding_side changes no number, so results do not report it."""

    max_length: int
    stride: int
    bos_policy: str
    bos_token_id: int | None
    batch_size: int
    padding_side: str = "right"

    @property
    def has_bos(self) -> bool:
        return self.bos_token_id is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "stride": self.stride,
            "bos_policy": self.bos_policy,
            "bos_token_id": self.bos_token_id,
            "batch_size": self.batch_size,
        }


def model_context(model: Any) -> int | None:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def make_plan(loaded: LoadedModel, settings: WindowSettings) -> Plan:
    context = model_context(loaded.model)
    max_length = settings.max_length or min(context or DEFAULT_CONTEXT_CAP, DEFAULT_CONTEXT_CAP)
    if context is not None and max_length > context:
        raise GptlossError(f"--max-length {max_length} exceeds this model's context of {context} tokens")
    stride = settings.stride or max_length
    if stride > max_length:
        raise GptlossError(f"--stride {stride} is larger than --max-length {max_length}")
    bos_id = resolve_bos(loaded.tokenizer, settings.bos)
    return Plan(max_length, stride, settings.bos.value, bos_id, settings.batch_size, settings.padding_side)
