"""A transformers model as a Backend: split into body and LM head where that gives the model's own logits,
so the head runs only at the scored positions (core reads it a block of the vocabulary at a time)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from .backend import Head, LinearHead

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Model types whose logits are exactly lm_head(base_model(...).last_hidden_state), soft-capped by
# `final_logit_softcapping` when the config sets it. Each is checked in the tests against the
# model's own logits; any other type is checked once on a probe sequence when it is loaded.
KNOWN_HEADS = frozenset({"gpt2", "llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text"})
CONTEXT_NAMES = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def split_head(model: Any) -> tuple[Any, LinearHead] | None:
    """(body, head) such that head(body(...).last_hidden_state) equals the model's logits, else None."""
    linear = model.get_output_embeddings()
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if not isinstance(linear, torch.nn.Linear) or body is None or body is model:
        return None
    if any(p.device.type == "meta" for p in model.parameters()):  # offloaded (--device-map): hooks bring the
        return None  # weights in when a module runs, so the head must run as a module, not from its weight
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    head = LinearHead(weight=linear.weight, bias=linear.bias, softcap=cap)
    if model.config.model_type in KNOWN_HEADS or head_matches(model, body, head):
        return body, head
    return None


def head_matches(model: Any, body: Any, head: LinearHead) -> bool:
    """Whether head(body(x)) reproduces the model's logits on a short probe sequence."""
    device = next(model.parameters()).device
    vocab = int(model.config.get_text_config().vocab_size)
    probe = (torch.arange(1, 9, device=device) % vocab).unsqueeze(0)  # (1, 8)
    with torch.inference_mode():
        full = model(input_ids=probe, use_cache=False).logits.float()  # (1, 8, V)
        split = head.logits(body(input_ids=probe, use_cache=False).last_hidden_state)  # (1, 8, V)
    return full.shape == split.shape and torch.allclose(full, split, rtol=1e-4, atol=1e-4)


class TransformersBackend:
    """A transformers causal LM in eval mode: one forward pass over a batch, up to what its LM head needs at
    the scored positions (hidden states and the split-off head, else the model's logits there), in one part
    the caller may keep."""

    in_pieces = False

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.split = split_head(model)

    @property
    def context_length(self) -> int | None:
        config = self.model.config
        for name in CONTEXT_NAMES:
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.get_text_config().vocab_size)

    def heads(
        self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> Iterator[tuple[slice, Head]]:
        """The whole batch as one part: hidden states at the scored positions with the split-off head, else
        the model's logits there."""
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): left padding keeps real positions
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids, "use_cache": False}
        if self.split is not None:
            body, linear = self.split
            yield slice(None), Head(_at(body(**inputs).last_hidden_state, rows, cols), linear)  # (M, D)
        else:  # (M, V): models whose head we cannot split off
            yield slice(None), Head(_at(self.model(**inputs).logits, rows, cols), None)


def _at(states: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The states (B, T, ...) that predict the scored tokens, on the device of `rows`: a model spread over
    devices (--device-map) ends on another one than it started."""
    at_rows, at_cols = rows.to(states.device), (cols - 1).to(states.device)
    return states[at_rows, at_cols].to(rows.device)
