"""Two models' next-token distributions at the same positions: NLL of each, KL divergence, top-1 agreement.

Used by `compare` when both models share a vocabulary. Like `loss.head_nll`, it walks the
vocabulary a block at a time with online log-sum-exps, so neither model's full logits exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .loss import GPU_ROWS, GPU_VOCAB_BLOCK, ROWS, VOCAB_BLOCK, Head


@dataclass(frozen=True)
class PairStats:
    """Two models' next-token distributions at the same positions, compared."""

    nll_a: torch.Tensor  # (M,)
    nll_b: torch.Tensor  # (M,)
    kld: torch.Tensor  # (M,) KL(P_A || P_B) in nats
    top1_a: torch.Tensor  # (M,) int64 argmax of P_A
    top1_b: torch.Tensor  # (M,) int64 argmax of P_B


def pair_stats(
    a: Head, b: Head, targets: torch.Tensor, rows: int | None = None, vocab_block: int | None = None
) -> PairStats:
    """NLL of both models, KL(P_A || P_B) and both argmaxes, in one blocked pass over a shared vocabulary.

    With m the running maximum of A's logits, s = sum exp(a - m) and t = sum exp(a - m) (a - b),
    KL = t / s - (lse_a - lse_b); t and s are rescaled together when m grows, b's log-sum-exp is
    accumulated alongside. No (positions x vocabulary) tensor is kept for either model.
    """
    if a.vocab != b.vocab:
        raise ValueError(f"vocabularies differ in size ({a.vocab} vs {b.vocab})")
    on_cpu = targets.device.type == "cpu"
    rows = rows or (ROWS if on_cpu else GPU_ROWS)
    vocab_block = vocab_block or (VOCAB_BLOCK if on_cpu else GPU_VOCAB_BLOCK)
    parts = [_pair_block(a, b, targets, slice(lo, lo + rows), vocab_block) for lo in range(0, targets.shape[0], rows)]
    if not parts:
        empty = torch.zeros(0, device=targets.device)
        return PairStats(empty, empty, empty, empty.long(), empty.long())
    return PairStats(*(torch.cat(column) for column in zip(*(vars(p).values() for p in parts), strict=True)))


class _Running:
    """Online log-sum-exp, target logit and argmax of one model's logits over vocabulary blocks."""

    def __init__(self, m: int, device: torch.device) -> None:
        self.max = torch.full((m,), -1e30, device=device)
        self.sum = torch.zeros(m, device=device)
        self.target = torch.zeros(m, device=device)
        self.argmax = torch.zeros(m, dtype=torch.long, device=device)

    def update(self, logits: torch.Tensor, targets: torch.Tensor, lo: int) -> torch.Tensor:
        """Fold in a block (m, b); returns exp(old max - new max), the factor earlier sums were rescaled by."""
        hi = lo + logits.shape[1]
        inside = (targets >= lo) & (targets < hi)
        local = (targets - lo).clamp(0, logits.shape[1] - 1).unsqueeze(1)
        self.target = torch.where(inside, logits.gather(1, local).squeeze(1), self.target)
        block_max, block_arg = logits.max(dim=1)
        self.argmax = torch.where(block_max > self.max, block_arg + lo, self.argmax)
        new_max = torch.maximum(self.max, block_max)
        scale = torch.exp(self.max - new_max)
        self.sum = self.sum * scale + torch.exp(logits - new_max.unsqueeze(1)).sum(dim=1)
        self.max = new_max
        return scale

    def lse(self) -> torch.Tensor:
        return self.max + torch.log(self.sum)


def _pair_block(a: Head, b: Head, targets: torch.Tensor, rows: slice, vocab_block: int) -> PairStats:
    target = targets[rows]
    m, device = target.shape[0], target.device
    run_a, run_b = _Running(m, device), _Running(m, device)
    cross = torch.zeros(m, device=device)  # sum exp(a - max_a) (a - b)
    for lo in range(0, a.vocab, vocab_block):
        hi = min(lo + vocab_block, a.vocab)
        logits_a, logits_b = a.block(rows, lo, hi), b.block(rows, lo, hi)  # (m, b) each
        scale = run_a.update(logits_a, target, lo)
        run_b.update(logits_b, target, lo)
        weights = torch.exp(logits_a - run_a.max.unsqueeze(1))  # (m, b)
        diff = torch.where(weights > 0, weights * (logits_a - logits_b), 0.0)  # 0, not NaN, where a is -inf
        cross = cross * scale + diff.sum(dim=1)
    lse_a, lse_b = run_a.lse(), run_b.lse()
    kld = (cross / run_a.sum - (lse_a - lse_b)).clamp(min=0.0)
    return PairStats(lse_a - run_a.target, lse_b - run_b.target, kld, run_a.argmax, run_b.argmax)
