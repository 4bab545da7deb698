"""What runs a model, whichever library it is: the Backend protocol, and the head inputs a backend hands over.

The engine (core) asks a backend for one thing: a batch's LM-head inputs at its scored positions. A backend
gives them as a `Head`: hidden states with the linear head that turns them into logits (transformers, whose
head is split off so it runs only there), logits it computed (a model whose head cannot be split off), or
logits in memory it lends (llama.cpp's output buffer, a piece of a window at a time). core reads every Head
the same way, a block of the vocabulary at a time (core.lmhead); it never asks which library is behind it.
transformers (`hf`) and llama.cpp (`llamacpp`) implement the protocol; another library is one more module.

The value types live here, below core, because a backend builds them; the head math on them stays in core.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch


class Backend(Protocol):
    """A loaded model as the engine runs it."""

    @property
    def context_length(self) -> int | None:
        """The longest input the model was trained for, in tokens (None: unknown)."""
        ...

    @property
    def vocab_size(self) -> int:
        """Entries of the model's vocabulary (columns of its logits)."""
        ...

    @property
    def in_pieces(self) -> bool:
        """Whether `heads` hands a batch over in several parts, each lent until the next is asked for: such
        parts cannot be kept (compare's HeadCache keeps none) and two such backends are stepped together.
        False: one part holding every scored position, the caller's to keep."""
        ...

    def heads(
        self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> Iterator[tuple[slice, Head]]:
        """Forward a batch and hand over its LM head's inputs at the scored positions, in order: (which of the
        M positions, their Head). ids, mask: (B, T) token ids and attention mask (1 for real tokens, padding
        on either side); rows, cols: (M,) the scored tokens, each predicted at input position cols - 1 of row
        rows. The Heads' rows are on the device of `rows`."""
        ...


def finish_logits(raw: torch.Tensor, bias: torch.Tensor | None, softcap: float | None) -> torch.Tensor:
    """The matmul's output (m, b) in the model's dtype -> float32 logits: + bias, then the soft cap."""
    block = raw.float()  # (m, b)
    if bias is not None:
        block += bias.float()
    if softcap:
        block = torch.tanh(block / softcap) * softcap
    return block


@dataclass(frozen=True)
class LinearHead:
    """logits = softcap(features @ weight.T + bias); softcap(x) = tanh(x / cap) * cap when cap is set."""

    weight: torch.Tensor  # (V, D)
    bias: torch.Tensor | None  # (V,)
    softcap: float | None

    def logits(self, features: torch.Tensor, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """float32 logits of vocabulary entries [lo, hi) for features (M, D): (M, hi - lo)."""
        return finish_logits(self.raw(features, lo, hi), self.bias_block(lo, hi), self.softcap)  # (M, hi - lo)

    def raw(self, features: torch.Tensor, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """The matmul's output for entries [lo, hi), in the model's dtype: (M, hi - lo)."""
        return features @ self.weight[lo:hi].T

    def bias_block(self, lo: int = 0, hi: int | None = None) -> torch.Tensor | None:
        return None if self.bias is None else self.bias[lo:hi]

    @property
    def vocab(self) -> int:
        return int(self.weight.shape[0])

    def logits_at(self, features: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """float32 logit of entry ids[i] for features[i]: (M,). Computed row by row, so it may differ
        from the blocked matmul's value in the last bits."""
        value = (features.float() * self.weight[ids].float()).sum(dim=-1)  # (M,)
        value = value.to(features.dtype).float()  # rounded as the matmul output is, so ties stay ties
        if self.bias is not None:
            value += self.bias[ids].float()
        if self.softcap:
            value = torch.tanh(value / self.softcap) * self.softcap
        return value


@dataclass(frozen=True)
class BorrowedLogits:
    """Logits (M, V) held in memory that is not ours (llama.cpp's output buffer), read as a linear head's
    are computed: a float32 copy of one block at a time, never written. The `features` handed to its
    methods are those logits."""

    vocab: int

    def logits(self, features: torch.Tensor, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """float32 copy of entries [lo, hi) of logits (M, V): (M, hi - lo), the caller's to overwrite."""
        return features[:, lo:hi].to(torch.float32, copy=True)

    def logits_at(self, features: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """float32 logit of entry ids[i] in row i: (M,)."""
        return features.gather(1, ids.unsqueeze(1)).squeeze(1).float()


BlockedHead = LinearHead | BorrowedLogits  # what the blocked passes read logits through


class Head:
    """A head read a block at a time (a linear head with its inputs, or borrowed logits), or logits given
    whole (models whose head cannot be split off; read with torch's log-softmax)."""

    def __init__(self, inputs: torch.Tensor, linear: BlockedHead | None) -> None:
        self.inputs = inputs  # (M, D) features, or (M, V) logits when linear is None or BorrowedLogits
        self.linear = linear

    @property
    def vocab(self) -> int:
        return self.linear.vocab if self.linear is not None else int(self.inputs.shape[1])

    def rows(self, part: slice) -> Head:
        """The same head at rows `part` only."""
        return Head(self.inputs[part], self.linear)

    def block(self, rows: slice, lo: int, hi: int) -> torch.Tensor:
        """float32 logits of rows, vocabulary entries [lo, hi): (m, hi - lo)."""
        if self.linear is not None:
            return self.linear.logits(self.inputs[rows], lo, hi)
        return self.inputs[rows, lo:hi].float()
