"""Two models' next-token distributions at the same positions: NLL of each, KL divergence, top-1 agreement.

Used by `compare` when both models share a vocabulary. Like `loss.head_nll`, it walks the vocabulary a
block at a time with online log-sum-exps (lmhead.OnlineLogSumExp), so neither model's full logits exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .lmhead import Head, OnlineLogSumExp, block_sizes, concat_rows


@dataclass(frozen=True)
class PairStats:
    """Two models' next-token distributions at the same positions, compared."""

    nll_a: torch.Tensor  # (M,)
    nll_b: torch.Tensor  # (M,)
    kld: torch.Tensor  # (M,) KL(P_A || P_B) in nats
    top1_a: torch.Tensor  # (M,) int64 argmax of P_A
    top1_b: torch.Tensor  # (M,) int64 argmax of P_B
    kld_reverse: torch.Tensor  # (M,) KL(P_B || P_A)
    cross_entropy: torch.Tensor  # (M,) -Σ_v P_A(v) log P_B(v) (Binoculars' cross-perplexity term)


def pair_stats(
    a: Head, b: Head, targets: torch.Tensor, rows: int | None = None, vocab_block: int | None = None
) -> PairStats:
    """NLL of both models, KL both ways, A's cross-entropy into B and both argmaxes, in one blocked pass
    over a shared vocabulary.

    With M the running maximum of A's logits, s = Σ exp(a - M) and t = Σ exp(a - M) (a - b),
    KL = t / s - (lse_a - lse_b); t is rescaled with s when M grows, and b's log-sum-exp is
    accumulated alongside. The reverse KL is the same with the roles swapped (B's running maximum), and
    -Σ P_A log P_B = lse_b - u / s with u = Σ exp(a - M) b. No (positions x vocabulary) tensor is kept.
    """
    if a.vocab != b.vocab:
        raise ValueError(f"vocabularies differ in size ({a.vocab} vs {b.vocab})")
    rows, vocab_block = block_sizes(targets.device, rows, vocab_block)
    parts = [_pair_block(a, b, targets, slice(lo, lo + rows), vocab_block) for lo in range(0, targets.shape[0], rows)]
    if not parts:
        empty = torch.zeros(0, device=targets.device)
        return PairStats(empty, empty, empty, empty.long(), empty.long(), empty, empty)
    return PairStats(*concat_rows(parts))


def _argmax(running: OnlineLogSumExp, logits: torch.Tensor, lo: int, argmax: torch.Tensor) -> torch.Tensor:
    """The argmax so far, given the next block (before it is folded into `running`)."""
    block_max, block_arg = logits.max(dim=1)  # (m,), (m,)
    return torch.where(block_max > running.max, block_arg + lo, argmax)


def _pair_block(a: Head, b: Head, targets: torch.Tensor, rows: slice, vocab_block: int) -> tuple[torch.Tensor, ...]:
    target = targets[rows]
    m, device = target.shape[0], target.device
    run_a, run_b = OnlineLogSumExp(target), OnlineLogSumExp(target)
    arg_a = torch.zeros(m, dtype=torch.long, device=device)  # (m,)
    arg_b = torch.zeros(m, dtype=torch.long, device=device)  # (m,)
    cross = torch.zeros(m, device=device)  # (m,) Σ exp(a - M_a) (a - b)
    back = torch.zeros(m, device=device)  # (m,) Σ exp(b - M_b) (b - a)
    into = torch.zeros(m, device=device)  # (m,) Σ exp(a - M_a) b
    for lo in range(0, a.vocab, vocab_block):
        hi = min(lo + vocab_block, a.vocab)
        logits_a, logits_b = a.block(rows, lo, hi), b.block(rows, lo, hi)  # (m, b) each
        arg_a, arg_b = _argmax(run_a, logits_a, lo, arg_a), _argmax(run_b, logits_b, lo, arg_b)
        diff = torch.sub(logits_a, logits_b).nan_to_num_(nan=0.0)  # (m, b): -inf - -inf where both mask a token
        # Each weight is summed into its running log-sum-exp inside fold, so its memory is free afterwards.
        # Products 0 * inf (a token one model masks) are NaN and left out by nansum, as a zero weight should be.
        fold_a = run_a.fold(logits_a, lo, consume=a.linear is not None)  # computed logits are scratch
        cross = cross * fold_a.scale + torch.nansum(fold_a.weights * diff, dim=-1)
        into = into * fold_a.scale + torch.nansum(fold_a.weights.mul_(logits_b), dim=-1)
        fold_b = run_b.fold(logits_b, lo, consume=b.linear is not None)
        back = back * fold_b.scale - torch.nansum(fold_b.weights.mul_(diff), dim=-1)
    lse_a, lse_b = run_a.lse(), run_b.lse()
    kld = (cross / run_a.sum - (lse_a - lse_b)).clamp(min=0.0)
    reverse = (back / run_b.sum - (lse_b - lse_a)).clamp(min=0.0)
    return run_a.nll(), run_b.nll(), kld, arg_a, arg_b, reverse, lse_b - into / run_a.sum
