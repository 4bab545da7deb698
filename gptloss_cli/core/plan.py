"""Window settings as the user gave them, resolved against a model into the Plan every result reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import GptlossError, UsageError
from ..inputs.document import Document
from ..models.spec import LoadedModel
from ..models.tokenizer import Tokenizer
from .protocols import DEFAULT_LENGTH, FIXED_STRIDE, Protocol
from .windows import BosPolicy, TokenizedDocument, resolve_bos, tokenize

DEFAULT_CONTEXT_CAP = 2048


@dataclass(frozen=True)
class WindowSettings:
    """What the user asked for; None means the model's (or the protocol's) default."""

    max_length: int | None = None
    stride: int | None = None
    bos: BosPolicy = BosPolicy.auto
    batch_size: int = 8
    padding_side: str = "right"
    protocol: Protocol = Protocol.gptloss


@dataclass(frozen=True)
class Plan:
    """Settings resolved against a model. padding_side changes no number, so results do not report it.

    bos_token_id: the BOS id windows start with (gptloss), or the one a preset puts in (llama.cpp); None
    where nothing is added (the tokenizer's own BOS, when its defaults add one, is a token of the document);
    prefix_token_id: the token before a document's first window (lm-eval: BOS, else EOS);
    special_tokens: documents are tokenised with the tokenizer's special tokens (its defaults).
    """

    max_length: int
    stride: int
    bos_policy: str
    bos_token_id: int | None
    batch_size: int
    padding_side: str = "right"
    protocol: Protocol = Protocol.gptloss
    prefix_token_id: int | None = None
    special_tokens: bool = False

    @property
    def has_bos(self) -> bool:
        return self.bos_token_id is not None

    @property
    def peer_softmax(self) -> bool:
        """Whether NLL is computed as the peer does (torch's float32 log-softmax over the vocabulary)."""
        return self.protocol in (Protocol.lm_eval, Protocol.hf_stride, Protocol.gptq)

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
    protocol = settings.protocol
    if protocol is not Protocol.gptloss and settings.bos is not BosPolicy.auto:
        raise UsageError(f"--bos {settings.bos.value}: the {protocol.value} protocol fixes where BOS goes")
    if protocol in FIXED_STRIDE and settings.stride is not None:
        raise UsageError(f"--stride: the {protocol.value} protocol fixes how its windows advance")
    context = model_context(loaded)
    default = min(context or DEFAULT_CONTEXT_CAP, DEFAULT_LENGTH.get(protocol, DEFAULT_CONTEXT_CAP))
    if protocol is Protocol.lm_eval:
        default = context or DEFAULT_CONTEXT_CAP  # lm-eval's max_length: the model's whole context
    max_length = settings.max_length or default
    if context is not None and max_length > context:
        raise GptlossError(f"--max-length {max_length} exceeds this model's context of {context} tokens")
    stride = settings.stride or max_length
    if stride > max_length:
        raise UsageError(f"--stride {stride} is larger than --max-length {max_length}")
    tokenizer = loaded.tokenizer
    bos_id = resolve_bos(tokenizer, settings.bos)
    common = (max_length, stride, settings.bos.value)
    if protocol is Protocol.gptloss:
        return Plan(*common, bos_id, settings.batch_size, settings.padding_side)
    if protocol is Protocol.lm_eval:
        prefix = bos_id if bos_id is not None else tokenizer.eos_token_id
        if prefix is None:
            raise GptlossError("the lm-eval protocol starts a document with BOS, else EOS: this tokenizer has neither")
        return Plan(*common, None, settings.batch_size, settings.padding_side, protocol, prefix, True)
    # llama.cpp puts BOS in when the tokenizer's defaults add it (add_bos_token); hf-stride and gptq add none
    bos_id = bos_id if protocol is Protocol.llama_cpp and tokenizer.adds_bos else None
    return Plan(*common, bos_id, settings.batch_size, settings.padding_side, protocol, None, True)


def tokenize_document(plan: Plan, tokenizer: Tokenizer, document: Document) -> TokenizedDocument:
    """The document's tokens as plan.protocol sees them: without special tokens (gptloss: windows add BOS),
    or with the tokenizer's defaults, as the peers tokenise (Gemma's put BOS first; SmolLM2's do not)."""
    return tokenize(tokenizer, document, special=plan.special_tokens)
