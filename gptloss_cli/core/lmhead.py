"""The LM head, a block at a time: float32 logits of a block of the vocabulary, and the online
log-sum-exp that folds the blocks together so no (positions x vocabulary) tensor ever exists.

Log-softmax is `logit - logsumexp(logits)` in float32 whatever dtype the model runs in. For a linear
LM head the log-sum-exp is accumulated over blocks of the vocabulary (a running maximum and a
rescaled running sum, as in online softmax), so the largest float32 tensor is rows x vocab_block
(2 MiB on CPU, 256 MiB on a GPU), whatever the vocabulary size. Blocking also keeps the weight block
in cache while all rows use it, which makes the head about twice as fast as whole-vocabulary chunks
on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# The value types a backend hands over (models.backend), read here a block at a time; named here too, since
# the head math of core is written in them.
from ..models.backend import BlockedHead as BlockedHead
from ..models.backend import BorrowedLogits as BorrowedLogits
from ..models.backend import Head as Head
from ..models.backend import LinearHead as LinearHead
from ..models.backend import finish_logits as finish_logits

ROWS = 256  # positions per block on CPU: a block's logits stay in cache
VOCAB_BLOCK = 2048  # vocabulary entries per block on CPU
GPU_ROWS = 2048  # on accelerators small blocks would be launch-bound: 256 MiB of float32 logits per block
GPU_VOCAB_BLOCK = 32768
LOGITS_CHUNK_BYTES = 256 * 2**20  # for logits handed over whole (models whose head cannot be split off)
# One block folded into the running (maximum, sum, target logit), from the matmul's raw output (core.fused).
Step = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
FAR_BELOW = -1e30  # the running maximum before any block: finite, so 0 * (old - new max) stays 0


def block_sizes(device: torch.device, rows: int | None = None, vocab_block: int | None = None) -> tuple[int, int]:
    """(positions, vocabulary entries) per block: small on CPU (cache), large elsewhere (fewer launches)."""
    on_cpu = device.type == "cpu"
    return rows or (ROWS if on_cpu else GPU_ROWS), vocab_block or (VOCAB_BLOCK if on_cpu else GPU_VOCAB_BLOCK)


def logits_rows(vocab: int) -> int:
    """Rows of whole logits (M, V) converted to float32 at a time."""
    return max(1, LOGITS_CHUNK_BYTES // (4 * max(1, vocab)))


@dataclass(frozen=True)
class Fold:
    """What folding one block (m, b) into an OnlineLogSumExp gave."""

    shifted: torch.Tensor  # (m, b) z - new running max
    weights: torch.Tensor  # (m, b) exp(shifted)
    shift: torch.Tensor  # (m,) old max - new max, <= 0
    scale: torch.Tensor  # (m,) exp(shift): the factor sums over earlier blocks are rescaled by


class OnlineLogSumExp:
    """log Σ_v exp(z_v) over vocabulary blocks, and the target's logit, for m positions.

    With M the running maximum, sum = Σ exp(z - M) over the blocks so far; when a block raises M to M'
    the sum is rescaled by exp(M - M'). Callers that keep sums of their own (entropy, KL) rescale them
    with the Fold's scale.
    """

    def __init__(self, targets: torch.Tensor) -> None:
        m, device = targets.shape[0], targets.device
        self.targets = targets  # (m,)
        self.max = torch.full((m,), FAR_BELOW, device=device)  # (m,)
        self.sum = torch.zeros(m, device=device)  # (m,)
        self.target = torch.zeros(m, device=device)  # (m,) the target's logit, once its block is seen

    def fold(self, logits: torch.Tensor, lo: int, consume: bool = False) -> Fold:
        """Fold in float32 logits (m, b) of vocabulary entries [lo, lo + b). consume: the caller no longer
        needs `logits`, which becomes Fold.shifted in place (one (m, b) tensor fewer to allocate: on a CPU
        allocating and touching it costs more than the arithmetic)."""
        new_max, shift, scale = self._advance(logits, lo)
        shifted = logits.sub_(new_max.unsqueeze(1)) if consume else logits - new_max.unsqueeze(1)  # (m, b)
        weights = shifted.exp()  # (m, b)
        self.sum = self.sum * scale + weights.sum(dim=-1)
        return Fold(shifted, weights, shift, scale)

    def fold_sum(self, logits: torch.Tensor, lo: int) -> None:
        """Fold in logits that are scratch, keeping only the running sum (NLL alone): exp(z - M) is computed
        in the logits' own memory, so the block allocates nothing (1.4x faster than `fold` on Gemma's head
        on a CPU, the same numbers)."""
        new_max, _, scale = self._advance(logits, lo)
        self.sum = self.sum * scale + logits.sub_(new_max.unsqueeze(1)).exp_().sum(dim=-1)

    def fold_step(self, step: Step, head: LinearHead, features: torch.Tensor, lo: int, hi: int) -> None:
        """Fold in entries [lo, hi) of a linear head through `step` (core.fused.nll_step, compiled: the float32
        conversion, bias, soft cap and this fold of the matmul's output in one kernel), keeping the running
        maximum, sum and target logit as fold_sum does."""
        self.max, self.sum, self.target = step(
            head.raw(features, lo, hi),
            self.targets - lo,
            self.max,
            self.sum,
            self.target,
            head.bias_block(lo, hi),
            head.softcap,
        )

    def _advance(self, logits: torch.Tensor, lo: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Note the target's logit if it is in this block and raise the running maximum: (new max, old max -
        new max, exp of that), each (m,)."""
        hi = lo + logits.shape[1]
        inside = (self.targets >= lo) & (self.targets < hi)  # (m,)
        local = (self.targets - lo).clamp(0, logits.shape[1] - 1).unsqueeze(1)  # (m, 1)
        self.target = torch.where(inside, logits.gather(1, local).squeeze(1), self.target)
        new_max = torch.maximum(self.max, logits.amax(dim=-1))  # (m,)
        shift = self.max - new_max  # (m,)
        self.max = new_max
        return new_max, shift, torch.exp(shift)

    def lse(self) -> torch.Tensor:
        """(m,) log Σ_v exp(z_v)."""
        return self.max + torch.log(self.sum)

    def nll(self) -> torch.Tensor:
        """(m,) -log p(target) = lse - z_target."""
        return self.lse() - self.target


def concat_rows(parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Blocks of rows (each a tuple of per-row tensors) joined column by column."""
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))
