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
