"""Pure torch: per-token negative log-likelihood from hidden states or logits.

Log-softmax is `logit - logsumexp(logits)` in float32 whatever dtype the model
runs in, and it is computed a chunk of positions at a time, so a float32
(positions x vocabulary) tensor is never larger than `max_chunk_bytes`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Head = Callable[[torch.Tensor], torch.Tensor]
DEFAULT_CHUNK_BYTES = 256 * 2**20


def chunk_rows(vocab_size: int, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """How many positions fit in one float32 chunk of logits."""
    return max(1, max_chunk_bytes // (4 * vocab_size))


def nll_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[target] per row, in float32.

    logits: (M, V) any float dtype; targets: (M,) int64. Returns (M,) float32.
    """
    logits = logits.float()  # (M, V)
    lse = torch.logsumexp(logits, dim=-1)  # (M,)
    target_logit = logits.gather(1, targets.unsqueeze(1)).squeeze(1)  # (M,)
    return lse - target_logit


def chunked_nll(
    features: torch.Tensor,
    targets: torch.Tensor,
    head: Head,
    rows: int,
) -> torch.Tensor:
    """Per-position NLL, applying `head` (features -> logits) `rows` positions at a time.

    features: (M, D) the inputs of the head at the scored positions; targets: (M,).
    Returns (M,) float32 on the features' device.
    """
    out = torch.empty(features.shape[0], dtype=torch.float32, device=features.device)  # (M,)
    for lo in range(0, features.shape[0], rows):
        hi = lo + rows
        out[lo:hi] = nll_from_logits(head(features[lo:hi]), targets[lo:hi])  # (rows,)
    return out
