"""The mean and spread of log p over the model's next-token distribution, beside the target's NLL.

For Min-K%++ (membership scores): at position t with distribution p over the vocabulary,
μ_t = Σ_v p(v) log p(v) and σ_t² = Σ_v p(v) (log p(v))² − μ_t². Through a linear head they come from the
same blocked pass as the NLL (lmhead.OnlineLogSumExp): with M the running maximum of the logits z and
y = z − M, the sums s0 = Σ e^y, s1 = Σ e^y y and s2 = Σ e^y y² are rescaled when M grows by d = M_old − M_new
(s2 ← e^d (s2 + 2 d s1 + d² s0), s1 ← e^d (s1 + d s0)); then E[y] = s1/s0, Var = s2/s0 − E[y]² and
μ = E[y] − log s0 (log p = y − log s0). No (positions × vocabulary) tensor is kept.
"""

from __future__ import annotations

import torch

from .lmhead import Head, OnlineLogSumExp, block_sizes, concat_rows, logits_rows


def head_moments(head: Head, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(nll, μ, σ) per scored position, each (M,) float32, blocked over rows and vocabulary."""
    rows, vocab_block = block_sizes(targets.device)
    if head.linear is None:
        rows = logits_rows(head.vocab)
    parts = [_rows(head, targets, slice(lo, lo + rows), vocab_block) for lo in range(0, targets.shape[0], rows)]
    if not parts:
        empty = torch.zeros(0, device=targets.device)
        return empty, empty, empty
    nll, mean, sd = concat_rows(parts)
    return nll, mean, sd


def _rows(head: Head, targets: torch.Tensor, rows: slice, vocab_block: int) -> tuple[torch.Tensor, ...]:
    target = targets[rows]
    running = OnlineLogSumExp(target)
    s1 = torch.zeros(target.shape[0], device=target.device)  # (m,) Σ e^y y
    s2 = torch.zeros(target.shape[0], device=target.device)  # (m,) Σ e^y y²
    for lo in range(0, head.vocab, vocab_block):
        s0 = running.sum  # (m,) before this block
        block = head.block(rows, lo, min(lo + vocab_block, head.vocab))  # (m, b), or a view of logits given whole
        fold = running.fold(block, lo, consume=head.linear is not None)  # computed logits are scratch
        d, y, w = fold.shift, fold.shifted, fold.weights  # (m,), (m, b), (m, b)
        wy = w.mul_(y)  # (m, b) Σ e^y is in running.sum already: w's memory holds e^y y, then e^y y²
        block_s1 = wy.sum(dim=-1)  # (m,)
        block_s2 = wy.mul_(y).sum(dim=-1)  # (m,)
        # d (2 s1 + d s0), not 2 d s1 + d² s0: at the first block d is about -1e30 and d² overflows
        s2 = fold.scale * (s2 + d * (2 * s1 + d * s0)) + block_s2
        s1 = fold.scale * (s1 + d * s0) + block_s1
    mean_y = s1 / running.sum  # (m,)
    variance = (s2 / running.sum - mean_y * mean_y).clamp(min=0.0)  # (m,)
    return running.nll(), mean_y - torch.log(running.sum), variance.sqrt()


def softmax_moments(head: Head, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same from torch's float32 log-softmax over the whole vocabulary (the presets' arithmetic)."""
    rows = logits_rows(head.vocab)
    parts: list[tuple[torch.Tensor, ...]] = []
    for lo in range(0, max(1, targets.shape[0]), rows):
        logp = torch.log_softmax(head.block(slice(lo, lo + rows), 0, head.vocab), dim=-1)  # (m, V)
        p = logp.exp()  # (m, V)
        mean = (p * logp).sum(dim=-1)  # (m,)
        variance = ((p * logp * logp).sum(dim=-1) - mean * mean).clamp(min=0.0)  # (m,)
        nll = -logp.gather(1, targets[lo : lo + rows].unsqueeze(1)).squeeze(1)  # (m,)
        parts.append((nll, mean, variance.sqrt()))
    nll, mean, sd = concat_rows(parts)
    return nll, mean, sd
