"""Pure torch: per-token negative log-likelihood from hidden states or logits.

Log-softmax is `logit - logsumexp(logits)` in float32 whatever dtype the model
runs in. The vocabulary is never materialised for many positions at once: for a
linear LM head the log-sum-exp is accumulated over blocks of the vocabulary
(a running maximum and a rescaled running sum, as in online softmax), so the
largest float32 tensor is rows x vocab_block (2 MiB on CPU, 256 MiB on a GPU), whatever the
vocabulary size. Blocking also keeps the weight block in cache while all rows
use it, which makes the head about twice as fast as whole-vocabulary chunks on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ROWS = 256  # positions per block on CPU: a block's logits stay in cache
VOCAB_BLOCK = 2048  # vocabulary entries per block on CPU
GPU_ROWS = 2048  # on accelerators small blocks would be launch-bound: 256 MiB of float32 logits per block
GPU_VOCAB_BLOCK = 32768
LOGITS_CHUNK_BYTES = 256 * 2**20  # for logits handed over whole (models whose head cannot be split off)


@dataclass(frozen=True)
class LinearHead:
    """logits = softcap(features @ weight.T + bias); softcap(x) = tanh(x / cap) * cap when cap is set."""

    weight: torch.Tensor  # (V, D)
    bias: torch.Tensor | None  # (V,)
    softcap: float | None

    def logits(self, features: torch.Tensor, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """float32 logits of vocabulary entries [lo, hi) for features (M, D): (M, hi - lo)."""
        block = (features @ self.weight[lo:hi].T).float()  # (M, hi - lo)
        if self.bias is not None:
            block += self.bias[lo:hi].float()
        if self.softcap:
            block = torch.tanh(block / self.softcap) * self.softcap
        return block

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


class Head:
    """Either a linear head with its inputs (logits computed a block at a time) or logits given whole."""

    def __init__(self, inputs: torch.Tensor, linear: LinearHead | None) -> None:
        self.inputs = inputs  # (M, D) features, or (M, V) logits when linear is None
        self.linear = linear

    @property
    def vocab(self) -> int:
        return int(self.linear.weight.shape[0] if self.linear is not None else self.inputs.shape[1])

    def block(self, rows: slice, lo: int, hi: int) -> torch.Tensor:
        """float32 logits of rows, vocabulary entries [lo, hi): (m, hi - lo)."""
        if self.linear is not None:
            return self.linear.logits(self.inputs[rows], lo, hi)
        return self.inputs[rows, lo:hi].float()


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
    rows = max(1, LOGITS_CHUNK_BYTES // (4 * logits.shape[-1]))
    out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)  # (M,)
    for lo in range(0, logits.shape[0], rows):
        out[lo : lo + rows] = nll_from_logits(logits[lo : lo + rows], targets[lo : lo + rows])
    return out


def head_nll(
    features: torch.Tensor,
    targets: torch.Tensor,
    head: LinearHead,
    rows: int | None = None,
    vocab_block: int | None = None,
) -> torch.Tensor:
    """Per-position NLL through a linear head, blocked over positions and vocabulary.

    features: (M, D) the head's inputs at the scored positions; targets: (M,). Returns (M,) float32.
    Block sizes default by device: small on CPU (cache), large elsewhere (fewer kernel launches).
    """
    on_cpu = features.device.type == "cpu"
    rows = rows or (ROWS if on_cpu else GPU_ROWS)
    vocab_block = vocab_block or (VOCAB_BLOCK if on_cpu else GPU_VOCAB_BLOCK)
    out = torch.empty(features.shape[0], dtype=torch.float32, device=features.device)  # (M,)
    for lo in range(0, features.shape[0], rows):
        out[lo : lo + rows] = _block_nll(features[lo : lo + rows], targets[lo : lo + rows], head, vocab_block)
    return out


def _block_nll(features: torch.Tensor, targets: torch.Tensor, head: LinearHead, vocab_block: int) -> torch.Tensor:
    m = features.shape[0]
    vocab = head.weight.shape[0]
    run_max = torch.full((m,), -torch.inf, device=features.device)  # (m,)
    run_sum = torch.zeros(m, device=features.device)  # (m,)
    target_logit = torch.zeros(m, device=features.device)  # (m,)
    for lo in range(0, vocab, vocab_block):
        hi = min(lo + vocab_block, vocab)
        logits = head.logits(features, lo, hi)  # (m, hi - lo)
        inside = (targets >= lo) & (targets < hi)  # (m,)
        local = (targets - lo).clamp(0, hi - lo - 1).unsqueeze(1)  # (m, 1)
        target_logit = torch.where(inside, logits.gather(1, local).squeeze(1), target_logit)
        new_max = torch.maximum(run_max, logits.amax(dim=-1))  # (m,)
        run_sum = run_sum * torch.exp(run_max - new_max) + logits.sub_(new_max.unsqueeze(1)).exp_().sum(dim=-1)
        run_max = new_max
    return run_max + torch.log(run_sum) - target_logit


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
    head: LinearHead,
    top_k: int,
    rows: int | None = None,
    vocab_block: int | None = None,
) -> TokenStats:
    """NLL, entropy, rank and top-k through a linear head, in the same blocked pass as `head_nll`.

    Entropy is accumulated online like the log-sum-exp: with m the running maximum and
    s0 = sum exp(z - m), s1 = sum exp(z - m) (z - m), H = log s0 - s1 / s0; when m grows
    to m' both sums are rescaled by exp(m - m') (s1 after adding (m - m') s0).
    Rank counts the entries whose logit exceeds the target's, the target itself excluded.
    """
    on_cpu = features.device.type == "cpu"
    rows = rows or (ROWS if on_cpu else GPU_ROWS)
    vocab_block = vocab_block or (VOCAB_BLOCK if on_cpu else GPU_VOCAB_BLOCK)
    k = min(top_k, head.weight.shape[0])
    parts = [
        _block_stats(features[lo : lo + rows], targets[lo : lo + rows], head, k, vocab_block)
        for lo in range(0, features.shape[0], rows)
    ]
    if not parts:
        return logits_stats(torch.zeros(0, head.weight.shape[0], device=features.device), targets, k)
    return TokenStats(*(torch.cat(column) for column in zip(*(vars(p).values() for p in parts), strict=True)))


def _block_stats(
    features: torch.Tensor, targets: torch.Tensor, head: LinearHead, k: int, vocab_block: int
) -> TokenStats:
    m, vocab, device = features.shape[0], head.weight.shape[0], features.device
    run_max = torch.full((m,), -1e30, device=device)  # (m,) finite, so 0 * (old - new max) stays 0
    s0 = torch.zeros(m, device=device)  # (m,) sum exp(z - run_max)
    s1 = torch.zeros(m, device=device)  # (m,) sum exp(z - run_max) * (z - run_max)
    target_logit = torch.zeros(m, device=device)  # (m,)
    reference = head.logits_at(features, targets)  # (m,) the target's logit, for counting those above it
    above = torch.zeros(m, dtype=torch.long, device=device)  # (m,)
    top_v = torch.empty(m, 0, device=device)  # (m, <=k)
    top_i = torch.empty(m, 0, dtype=torch.long, device=device)  # (m, <=k)
    for lo in range(0, vocab, vocab_block):
        hi = min(lo + vocab_block, vocab)
        logits = head.logits(features, lo, hi)  # (m, b)
        inside = (targets >= lo) & (targets < hi)  # (m,)
        local = (targets - lo).clamp(0, hi - lo - 1).unsqueeze(1)  # (m, 1)
        target_logit = torch.where(inside, logits.gather(1, local).squeeze(1), target_logit)
        above += (logits > reference.unsqueeze(1)).sum(dim=1)
        if k:
            values, index = logits.topk(min(k, hi - lo), dim=1)  # (m, k')
            top_v, pick = torch.cat([top_v, values], dim=1).topk(min(k, top_v.shape[1] + values.shape[1]), dim=1)
            top_i = torch.cat([top_i, index + lo], dim=1).gather(1, pick)
        new_max = torch.maximum(run_max, logits.amax(dim=-1))  # (m,)
        shift = run_max - new_max  # (m,) <= 0
        scale = torch.exp(shift)
        shifted = logits.sub_(new_max.unsqueeze(1))  # (m, b) z - new_max, in place
        weights = shifted.exp()  # (m, b)
        s1 = scale * (s1 + shift * s0) + shifted.mul_(weights).sum(dim=-1)
        s0 = scale * s0 + weights.sum(dim=-1)
        run_max = new_max
    log_s0 = torch.log(s0)
    lse = run_max + log_s0  # (m,)
    rank = 1 + above - (target_logit > reference).long()  # the target never counts itself
    return TokenStats(lse - target_logit, log_s0 - s1 / s0, rank, top_i, top_v - lse.unsqueeze(1))


def logits_stats(logits: torch.Tensor, targets: torch.Tensor, top_k: int) -> TokenStats:
    """The same statistics from full logits (M, V), a chunk of rows at a time in float32."""
    rows = max(1, LOGITS_CHUNK_BYTES // (4 * max(1, logits.shape[-1])))
    parts = []
    for lo in range(0, max(1, logits.shape[0]), rows):
        chunk = logits[lo : lo + rows].float()  # (m, V)
        target = targets[lo : lo + rows].unsqueeze(1)  # (m, 1)
        logp = torch.log_softmax(chunk, dim=-1)  # (m, V)
        target_logit = chunk.gather(1, target)  # (m, 1)
        top_v, top_i = logp.topk(min(top_k, logp.shape[1]), dim=1)  # (m, k)
        parts.append(
            TokenStats(
                -logp.gather(1, target).squeeze(1),
                torch.special.entr(logp.exp()).sum(dim=-1),
                1 + (chunk > target_logit).sum(dim=-1),
                top_i,
                top_v,
            )
        )
    return TokenStats(*(torch.cat(column) for column in zip(*(vars(p).values() for p in parts), strict=True)))
