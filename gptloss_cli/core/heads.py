"""A model's forward pass up to its LM head at the scored positions: a transformers model split into body and
head (so the head runs only there), or llama.cpp's logits there, a piece of a window at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ..models.llamacpp import LlamaCppModel
from ..models.spec import LoadedModel
from .batches import BatchInputs
from .lmhead import BorrowedLogits, Head, LinearHead

PIECE = 64  # tokens per llama.cpp step: its output buffer holds this many rows of the vocabulary

# Model types whose logits are exactly lm_head(base_model(...).last_hidden_state), soft-capped by
# `final_logit_softcapping` when the config sets it. Each is checked in the tests against the
# model's own logits; any other type is checked once on a probe sequence when it is loaded.
KNOWN_HEADS = frozenset({"gpt2", "llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text"})


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


class ModelHead:
    """One model's forward pass over a batch, up to what its LM head needs at the scored positions."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.split = split_head(model)

    def __call__(self, batch: BatchInputs) -> Head:
        """Hidden states at the scored positions with the split-off head, else the model's logits there."""
        position_ids = (batch.mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): left padding keeps real positions
        inputs = {
            "input_ids": batch.ids,
            "attention_mask": batch.mask,
            "position_ids": position_ids,
            "use_cache": False,
        }
        if self.split is not None:
            body, linear = self.split
            return Head(_at(body(**inputs).last_hidden_state, batch), linear)  # (M, D)
        return Head(_at(self.model(**inputs).logits, batch), None)  # (M, V): models whose head we cannot split off

    def parts(self, batch: BatchInputs) -> Iterator[tuple[slice, Head]]:
        """The whole batch as one part."""
        yield slice(None), self(batch)


class LlamaCppHead:
    """A llama.cpp model's logits at a batch's scored positions, window by window and, within a window, a piece
    of PIECE tokens at a time (llama.cpp steps of the same length from the window's start: where the steps
    fall changes the numbers in the last digits, so they fall the same way in every run and every command).
    With windows of a multiple of PIECE this reproduces llama-perplexity's numbers."""

    def __init__(self, model: LlamaCppModel) -> None:
        self.model = model

    def parts(self, batch: BatchInputs) -> Iterator[tuple[slice, Head]]:
        """(positions of the batch's M, their borrowed logits) in order; each valid until the next."""
        rows, cols = batch.rows.cpu().numpy(), batch.cols.cpu().numpy()
        head, done = BorrowedLogits(self.model.n_vocab), 0
        for b in range(batch.ids.shape[0]):
            real = batch.mask[b].cpu().numpy().astype(bool)  # (T,)
            pad = int(np.argmax(real))  # left padding (0 when padded on the right)
            want = cols[rows == b] - 1 - pad  # (k,) input positions whose logits predict the targets
            for k, logits in self.model.logits(batch.ids[b].cpu().numpy()[real], want, PIECE):
                yield slice(done, done + k), Head(torch.from_numpy(logits), head)
                done += k


def model_head(loaded: LoadedModel) -> ModelHead | LlamaCppHead:
    """How a loaded model gives its head: llama.cpp's logits, or a transformers model's forward pass."""
    if isinstance(loaded.model, LlamaCppModel):
        return LlamaCppHead(loaded.model)
    return ModelHead(loaded.model)


def _at(states: torch.Tensor, batch: BatchInputs) -> torch.Tensor:
    """The states (B, T, ...) that predict the scored tokens, on the batch's device: a model spread over
    devices (--device-map) ends on another one than it started."""
    rows, cols = batch.rows.to(states.device), (batch.cols - 1).to(states.device)
    return states[rows, cols].to(batch.rows.device)


class HeadCache:
    """Model A's head inputs, batch by batch, kept from a first pass over the documents so that passes against
    other models (compare's candidates) reuse them instead of running A again. The batches of every pass come
    in the same order (same plan, same windows), which is what makes the n-th entry the n-th batch's."""

    def __init__(self) -> None:
        self.heads: list[Head] = []
        self.filled = False
        self._next = 0
        self._key: object = None

    def start(self, key: object) -> None:
        """A new pass over the batches that `key` (the plan and the documents' ids) lays out: the first pass
        fills the cache, later ones with the same key read it; another key starts afresh."""
        if key != self._key or not self.filled:  # a pass that stopped part way leaves nothing to read
            self.heads, self.filled, self._key = [], False, key
        self._next = 0

    def finish(self) -> None:
        self.filled = True

    def get(self, compute: Callable[[], Head]) -> Head:
        if not self.filled:
            self.heads.append(compute())
            return self.heads[-1]
        self._next += 1
        return self.heads[self._next - 1]
