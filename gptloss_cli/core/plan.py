"""Window settings as the user gave them, resolved against a model into the Plan every result reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import GptlossError, UsageError
from ..inputs.document import Document
from ..models.spec import LoadedModel
from ..models.tokenizer import Tokenizer
from .presets import DEFAULT, Layout, Preset, preset
from .windows import BosPolicy, TokenizedDocument, resolve_bos, tokenize


@dataclass(frozen=True)
class WindowSettings:
    """What the user asked for; None means the model's (or the protocol's) default. protocol: a preset's
    name (core.presets) or the preset itself."""

    max_length: int | None = None
    stride: int | None = None
    bos: BosPolicy = BosPolicy.auto
    batch_size: int = 8
    padding_side: str = "right"
    protocol: str | Preset = DEFAULT


@dataclass(frozen=True)
class Plan:
    """Settings resolved against a model. padding_side changes no number, so results do not report it.

    bos_token_id: the BOS id windows start with (gptloss), or the one a preset puts in (llama.cpp); None
    where nothing is added (the tokenizer's own BOS, when its defaults add one, is a token of the document);
    prefix_token_id: the token before a document's first window (the preset decides: core.presets);
    special_tokens: documents are tokenised with the tokenizer's special tokens (its defaults).
    """

    max_length: int
    stride: int
    bos_policy: str
    bos_token_id: int | None
    batch_size: int
    padding_side: str = "right"
    preset: Preset = field(default_factory=lambda: preset(DEFAULT))
    prefix_token_id: int | None = None

    @property
    def special_tokens(self) -> bool:
        return self.preset.special_tokens

    @property
    def peer_softmax(self) -> bool:
        """Whether NLL is computed as the peer does (torch's float32 log-softmax over the vocabulary)."""
        return self.preset.peer_softmax

    @property
    def layout(self) -> Layout:
        """What the preset cuts windows from."""
        return Layout(self.max_length, self.stride, self.bos_token_id, self.prefix_token_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "stride": self.stride,
            "bos_policy": self.bos_policy,
            "bos_token_id": self.bos_token_id,
            "batch_size": self.batch_size,
        }


def model_context(loaded: LoadedModel) -> int | None:
    """The longest input the model was trained for, as its backend tells (None: unknown)."""
    return loaded.backend.context_length


def make_plan(loaded: LoadedModel, settings: WindowSettings) -> Plan:
    """The settings resolved against `loaded`: the preset's defaults filled in, its refusals made."""
    chosen = preset(settings.protocol)
    if not chosen.takes_bos and settings.bos is not BosPolicy.auto:
        raise UsageError(f"--bos {settings.bos.value}: the {chosen.name} protocol fixes where BOS goes")
    if not chosen.takes_stride and settings.stride is not None:
        raise UsageError(f"--stride: the {chosen.name} protocol fixes how its windows advance")
    context = model_context(loaded)
    max_length = settings.max_length or chosen.default_length(context)
    if context is not None and max_length > context:
        raise GptlossError(f"--max-length {max_length} exceeds this model's context of {context} tokens")
    stride = settings.stride or max_length
    if stride > max_length:
        raise UsageError(f"--stride {stride} is larger than --max-length {max_length}")
    bos, prefix = chosen.starts(loaded.tokenizer, resolve_bos(loaded.tokenizer, settings.bos))
    return Plan(max_length, stride, settings.bos.value, bos, settings.batch_size, settings.padding_side, chosen, prefix)


def tokenize_document(plan: Plan, tokenizer: Tokenizer, document: Document) -> TokenizedDocument:
    """The document's tokens as plan.preset sees them: without special tokens (gptloss: windows add BOS),
    or with the tokenizer's defaults, as the peers tokenise (Gemma's put BOS first; SmolLM2's do not)."""
    return tokenize(tokenizer, document, special=plan.special_tokens)
