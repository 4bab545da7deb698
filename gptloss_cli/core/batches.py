"""Planned windows -> batches of model inputs, with where each window's scored tokens are."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .plan import Plan
from .windows import TokenizedDocument, Window, window_inputs

# Most model inputs (padding included) in one forward pass: activation memory grows with it. On a CPU
# a window of 1,024 at a time is 1.1-1.2x faster than 8 (Gemma-3-270M and SmolLM2, float32: activations
# that stay in cache); a longer window still goes alone. GPUs need many more to be busy.
CPU_TOKEN_BUDGET = 1024
GPU_TOKEN_BUDGET = 65536
MAX_PADDING = 0.25  # most of a batch's inputs that may be padding


def tokens_to_score(docs: list[TokenizedDocument], plan: Plan, skip: frozenset[int] = frozenset()) -> int:
    """How many tokens the documents not in `skip` will get a loss for (the progress bar's total)."""
    windows = all_windows(docs, plan, in_order=True)
    return sum(len(docs[w.doc].scored_positions(w.score_start, w.end)) for w in windows if w.doc not in skip)


def all_windows(docs: list[TokenizedDocument], plan: Plan, in_order: bool) -> list[Window]:
    """Every window that scores a token, of every document, as plan.preset lays them out: in document
    order, or longest first (similar lengths share a batch). A window whose tokens the loss mask leaves
    all out is skipped."""
    windows = [
        w
        for i, d in enumerate(docs)
        for w in document_windows_of(plan, i, d)
        if d.scored is None or d.scored[w.score_start : w.end].any()
    ]
    if not in_order:
        windows.sort(key=lambda w: w.end - w.start, reverse=True)
    return windows


def document_windows_of(plan: Plan, index: int, doc: TokenizedDocument) -> list[Window]:
    """The windows plan.preset runs over one document (`index`: its place in the run)."""
    plan.preset.check(doc.document.source, len(doc), plan.layout)
    return plan.preset.windows(index, len(doc), plan.layout)


def batches(windows: list[Window], plan: Plan, device: torch.device) -> Iterator[list[Window]]:
    """Consecutive windows, at most plan.batch_size at a time, at most a token budget of padded
    document tokens (BOS not counted, so a window of 1,024 fits a CPU budget of 1,024), and at most
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
class ModelBatch:
    """A batch of windows as model inputs, and where each window's scored tokens are."""

    ids: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T)
    rows: torch.Tensor  # (M,) batch row of each scored token
    cols: torch.Tensor  # (M,) input position of each scored token
    targets: torch.Tensor  # (M,) the scored tokens' ids (= ids[rows, cols] where the row holds them)
    meta: list[tuple[np.ndarray, np.ndarray]]  # per window: (document positions, context lengths)


def model_batch(docs: list[TokenizedDocument], batch: list[Window], plan: Plan, device: torch.device) -> ModelBatch:
    """Each window's inputs (its prefix token first, if any), padded on plan.padding_side."""
    rows_in = [window_inputs(docs[w.doc], w) for w in batch]
    width = max(len(r) for r in rows_in)
    ids = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
    row_idx, col_idx, targets, meta = [], [], [], []
    for b, (window, row) in enumerate(zip(batch, rows_in, strict=True)):
        pad = width - len(row) if plan.padding_side == "left" else 0
        ids[b, pad : pad + len(row)] = torch.tensor(row)
        mask[b, pad : pad + len(row)] = 1
        prefix = 0 if window.prefix is None else 1
        doc_pos = docs[window.doc].scored_positions(window.score_start, window.end)  # (k,) document token indices
        cols = pad + prefix + (doc_pos - window.start)  # (k,) input positions of the targets (one past a trimmed row)
        row_idx.append(np.full(len(doc_pos), b))
        col_idx.append(cols)
        targets.append(docs[window.doc].ids[doc_pos])
        meta.append((doc_pos, prefix + doc_pos - window.start))
    rows_t = torch.from_numpy(np.concatenate(row_idx)).to(device)  # (M,)
    cols_t = torch.from_numpy(np.concatenate(col_idx)).to(device)  # (M,)
    targets_t = torch.from_numpy(np.concatenate(targets).astype(np.int64)).to(device)  # (M,)
    return ModelBatch(ids.to(device), mask.to(device), rows_t, cols_t, targets_t, meta)
