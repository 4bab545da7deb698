"""Planned windows -> batches of model inputs, with where each window's scored tokens are."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .plan import Plan
from .windows import TokenizedDocument, Window, plan_windows, window_inputs

# Most model inputs (padding included) in one forward pass: activation memory grows with it, and
# beyond it throughput does not (CPU matmuls are saturated well before; GPUs take more).
CPU_TOKEN_BUDGET = 8192
GPU_TOKEN_BUDGET = 65536
MAX_PADDING = 0.25  # most of a batch's inputs that may be padding


def tokens_to_score(docs: list[TokenizedDocument], plan: Plan, skip: frozenset[int] = frozenset()) -> int:
    """How many tokens the documents not in `skip` will get a loss for (the progress bar's total)."""
    return sum(doc.n_to_score(plan.has_bos) for i, doc in enumerate(docs) if i not in skip)


def all_windows(docs: list[TokenizedDocument], plan: Plan, in_order: bool) -> list[Window]:
    """Every window that scores a token, of every document: in document order, or longest first
    (similar lengths share a batch). A window whose tokens the loss mask leaves all out is skipped."""
    windows = [
        w
        for i, d in enumerate(docs)
        for w in plan_windows(i, len(d), plan.max_length, plan.stride, plan.has_bos)
        if d.scored is None or d.scored[w.score_start : w.end].any()
    ]
    if not in_order:
        windows.sort(key=lambda w: w.end - w.start, reverse=True)
    return windows


def batches(windows: list[Window], plan: Plan, device: torch.device) -> Iterator[list[Window]]:
    """Consecutive windows, at most plan.batch_size at a time, at most a token budget of padded
    document tokens (BOS not counted, so 8 windows of 1,024 make one batch), and at most
    MAX_PADDING of a batch's inputs padding (documents of many lengths: a new batch instead)."""
    budget = CPU_TOKEN_BUDGET if device.type == "cpu" else GPU_TOKEN_BUDGET
    batch: list[Window] = []
    width = real = 0
    for window in windows:
        length = window.end - window.start
        padded = (len(batch) + 1) * max(width, length)
        if batch and (len(batch) == plan.batch_size or padded > budget or real + length < (1 - MAX_PADDING) * padded):
            yield batch
            batch, width, real = [], 0, 0
        batch.append(window)
        width, real = max(width, length), real + length
    if batch:
        yield batch


@dataclass(frozen=True)
class BatchInputs:
    """A batch of windows as model inputs, and where each window's scored tokens are."""

    ids: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T)
    rows: torch.Tensor  # (M,) batch row of each scored token
    cols: torch.Tensor  # (M,) input position of each scored token
    targets: torch.Tensor  # (M,) = ids[rows, cols]
    meta: list[tuple[np.ndarray, np.ndarray]]  # per window: (document positions, context lengths)


def batch_inputs(docs: list[TokenizedDocument], batch: list[Window], plan: Plan, device: torch.device) -> BatchInputs:
    """Each window's inputs (BOS first when the plan has one), padded on plan.padding_side."""
    bos_id = plan.bos_token_id
    rows_in = [window_inputs(docs[w.doc], w, bos_id) for w in batch]
    width = max(len(r) for r in rows_in)
    ids = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
    prefix = 0 if bos_id is None else 1
    row_idx, col_idx, meta = [], [], []
    for b, (window, row) in enumerate(zip(batch, rows_in, strict=True)):
        pad = width - len(row) if plan.padding_side == "left" else 0
        ids[b, pad : pad + len(row)] = torch.tensor(row)
        mask[b, pad : pad + len(row)] = 1
        doc_pos = docs[window.doc].scored_positions(window.score_start, window.end)  # (k,) document token indices
        cols = pad + prefix + (doc_pos - window.start)  # (k,) input positions of the targets
        row_idx.append(np.full(len(doc_pos), b))
        col_idx.append(cols)
        meta.append((doc_pos, prefix + doc_pos - window.start))
    rows_t = torch.from_numpy(np.concatenate(row_idx)).to(device)  # (M,)
    cols_t = torch.from_numpy(np.concatenate(col_idx)).to(device)  # (M,)
    ids, mask = ids.to(device), mask.to(device)
    return BatchInputs(ids, mask, rows_t, cols_t, ids[rows_t, cols_t], meta)
