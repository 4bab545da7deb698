"""Per-token loss statistics through the LM head: NLL alone, or NLL with entropy, rank and top-k.

Each works on a Head (a linear head with its inputs, or logits given whole) at the scored positions
only, a block of rows and a block of the vocabulary at a time (see lmhead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .lmhead import BlockedHead, Head, LinearHead, OnlineLogSumExp, Step, block_sizes, concat_rows, logits_rows


def nll_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target] per row, in float32.

    logits: (M, V) any float dtype; targets: (M,) int64. Returns (M,) float32.
    """
    logits = logits.float()  # (M, V)
    lse = torch.logsumexp(logits, dim=-1)  # (M,)
    target_logit = logits.gather(1, targets.unsqueeze(1)).squeeze(1)  # (M,)
    return lse - target_logit


def logits_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row NLL of full logits (M, V), converted to float32 a chunk of rows at a time. Returns (M,)."""
    rows = logits_rows(logits.shape[-1])
    out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)  # (M,)
    for lo in range(0, logits.shape[0], rows):
        out[lo : lo + rows] = nll_from_logits(logits[lo : lo + rows], targets[lo : lo + rows])
    return out


def softmax_nll(head: Head, targets: torch.Tensor) -> torch.Tensor:
    """-log_softmax(logits)[target] with torch's float32 log-softmax over the whole vocabulary, a chunk of rows
    at a time: the arithmetic of transformers' loss and of lm-evaluation-harness. On Gemma's 262,144 entries it
    reads about 5e-6 lower (relative) than the blocked log-sum-exp, which is exact to ~1e-8. Returns (M,)."""
    rows = logits_rows(head.vocab)
    out = torch.empty(targets.shape[0], dtype=torch.float32, device=targets.device)  # (M,)
    for lo in range(0, targets.shape[0], rows):
        logp = torch.log_softmax(head.block(slice(lo, lo + rows), 0, head.vocab), dim=-1)  # (m, V)
        out[lo : lo + rows] = -logp.gather(1, targets[lo : lo + rows].unsqueeze(1)).squeeze(1)
    return out


def softmax_stats(head: Head, targets: torch.Tensor, top_k: int) -> TokenStats:
    """`logits_stats` on the head's logits, a chunk of rows at a time (the peers' float32 log-softmax)."""
    rows = logits_rows(head.vocab)
    parts = [
        logits_stats(head.block(slice(lo, lo + rows), 0, head.vocab), targets[lo : lo + rows], top_k)
        for lo in range(0, max(1, targets.shape[0]), rows)
    ]
    return TokenStats(*concat_rows([tuple(vars(p).values()) for p in parts]))


def head_nll(
    features: torch.Tensor,
    targets: torch.Tensor,
    head: BlockedHead,
    rows: int | None = None,
    vocab_block: int | None = None,
    step: Step | None = None,
) -> torch.Tensor:
    """Per-position NLL through a linear head (or borrowed logits), blocked over positions and vocabulary.

    features: (M, D) the head's inputs at the scored positions (the logits, for borrowed ones); targets:
    (M,). step: a linear head's blocks folded by it (core.fused, --compile on an accelerator). Returns (M,)
    float32.
    """
    rows, vocab_block = block_sizes(features.device, rows, vocab_block)
    vocab = head.vocab
    fused = (step, head) if step is not None and isinstance(head, LinearHead) else None
    out = torch.empty(features.shape[0], dtype=torch.float32, device=features.device)  # (M,)
    for lo in range(0, features.shape[0], rows):
        block = features[lo : lo + rows]  # (m, D)
        running = OnlineLogSumExp(targets[lo : lo + rows])
        for v in range(0, vocab, vocab_block):
            hi = min(v + vocab_block, vocab)
            if fused is None:
                running.fold_sum(head.logits(block, v, hi), v)
            else:
                running.fold_step(*fused, block, v, hi)
        out[lo : lo + rows] = running.nll()
    return out


@dataclass(frozen=True)
class TokenStats:
    """Per-position statistics of the next-token distribution, all float32 except ids and ranks."""

    nll: torch.Tensor  # (M,) -log p(target)
    entropy: torch.Tensor  # (M,) nats
    rank: torch.Tensor  # (M,) int64, 1 = the target is the most likely token
    top_ids: torch.Tensor  # (M, K) int64, most likely first
    top_logprobs: torch.Tensor  # (M, K)


def head_stats(
    features: torch.Tensor,
    targets: torch.Tensor,
    head: BlockedHead,
    top_k: int,
    rows: int | None = None,
    vocab_block: int | None = None,
) -> TokenStats:
    """NLL, entropy, rank and top-k through a linear head, in the same blocked pass as `head_nll`.

    Entropy is accumulated online beside the log-sum-exp: with M the running maximum and
    s0 = Σ exp(z - M), s1 = Σ exp(z - M) (z - M), H = log s0 - s1 / s0; when M grows to M' both sums
    are rescaled by exp(M - M') (s1 after adding (M - M') s0).
    Rank counts the entries whose logit exceeds the target's, the target itself excluded.
    """
    rows, vocab_block = block_sizes(features.device, rows, vocab_block)
    k = min(top_k, head.vocab)
    parts = [
        _block_stats(features[lo : lo + rows], targets[lo : lo + rows], head, k, vocab_block)
        for lo in range(0, features.shape[0], rows)
    ]
    if not parts:
        return logits_stats(torch.zeros(0, head.vocab, device=features.device), targets, k)
    return TokenStats(*concat_rows(parts))


def _block_stats(
    features: torch.Tensor, targets: torch.Tensor, head: BlockedHead, k: int, vocab_block: int
) -> tuple[torch.Tensor, ...]:
    m, vocab, device = features.shape[0], head.vocab, features.device
    running = OnlineLogSumExp(targets)
    s1 = torch.zeros(m, device=device)  # (m,) Σ exp(z - M) (z - M)
    reference = head.logits_at(features, targets)  # (m,) the target's logit, for counting those above it
    above = torch.zeros(m, dtype=torch.long, device=device)  # (m,)
    top_v = torch.empty(m, 0, device=device)  # (m, <=k)
    top_i = torch.empty(m, 0, dtype=torch.long, device=device)  # (m, <=k)
    for lo in range(0, vocab, vocab_block):
        hi = min(lo + vocab_block, vocab)
        logits = head.logits(features, lo, hi)  # (m, b)
        above += (logits > reference.unsqueeze(1)).sum(dim=1)
        if k:
            values, index = logits.topk(min(k, hi - lo), dim=1)  # (m, k')
            top_v, pick = torch.cat([top_v, values], dim=1).topk(min(k, top_v.shape[1] + values.shape[1]), dim=1)
            top_i = torch.cat([top_i, index + lo], dim=1).gather(1, pick)
        s0 = running.sum  # (m,) Σ exp(z - M) before this block
        fold = running.fold(logits, lo, consume=True)  # logits are not needed after this
        s1 = fold.scale * (s1 + fold.shift * s0) + fold.shifted.mul_(fold.weights).sum(dim=-1)
    lse = running.lse()  # (m,)
    entropy = torch.log(running.sum) - s1 / running.sum
    rank = 1 + above - (running.target > reference).long()  # the target never counts itself
    return running.nll(), entropy, rank, top_i, top_v - lse.unsqueeze(1)


def logits_stats(logits: torch.Tensor, targets: torch.Tensor, top_k: int) -> TokenStats:
    """The same statistics from full logits (M, V), a chunk of rows at a time in float32."""
    rows = logits_rows(logits.shape[-1])
    parts: list[tuple[torch.Tensor, ...]] = []
    for lo in range(0, max(1, logits.shape[0]), rows):
        chunk = logits[lo : lo + rows].float()  # (m, V)
        target = targets[lo : lo + rows].unsqueeze(1)  # (m, 1)
        logp = torch.log_softmax(chunk, dim=-1)  # (m, V)
        target_logit = chunk.gather(1, target)  # (m, 1)
        top_v, top_i = logp.topk(min(top_k, logp.shape[1]), dim=1)  # (m, k)
        entropy = torch.special.entr(logp.exp()).sum(dim=-1)  # (m,)
        rank = 1 + (chunk > target_logit).sum(dim=-1)  # (m,)
        parts.append((-logp.gather(1, target).squeeze(1), entropy, rank, top_i, top_v))
    return TokenStats(*concat_rows(parts))
