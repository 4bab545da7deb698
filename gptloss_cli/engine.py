"""Forward passes over planned windows, giving each scored token's NLL.

Alignment (one window, BOS prepended, tokens x0..x3 of the document)::

    input position   0      1    2    3    4
    input token      <bos>  x0   x1   x2   x3
    predicts         x0     x1   x2   x3   (next, unused)

The hidden state at input position j is fed to the LM head to score the token
at position j + 1. Only scored positions go through the head, a chunk at a time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from .errors import GptlossError
from .heads import split_head
from .loss import Head, TokenStats, head_nll, head_stats, logits_nll, logits_stats
from .models import LoadedModel
from .windows import BosPolicy, TokenizedDocument, Window, plan_windows, resolve_bos, window_inputs

DEFAULT_CONTEXT_CAP = 2048
# Most model inputs (padding included) in one forward pass: activation memory grows with it, and
# beyond it throughput does not (CPU matmuls are saturated well before; GPUs take more).
CPU_TOKEN_BUDGET = 8192
GPU_TOKEN_BUDGET = 65536
MAX_PADDING = 0.25  # most of a batch's inputs that may be padding
Progress = Callable[[int], None]  # called with the number of tokens just scored


@dataclass(frozen=True)
class WindowSettings:
    """What the user asked for; None means the model's default."""

    max_length: int | None = None
    stride: int | None = None
    bos: BosPolicy = BosPolicy.auto
    batch_size: int = 8
    padding_side: str = "right"


@dataclass(frozen=True)
class Plan:
    """Settings resolved against a model, as reported in every result."""

    max_length: int
    stride: int
    bos_policy: str
    bos_token_id: int | None
    batch_size: int


@dataclass(frozen=True)
class TokenDetail:
    """What `tokens` reports beyond the NLL, per scored token (same order as DocumentLosses.positions)."""

    entropy: np.ndarray  # (k,) float64 nats
    rank: np.ndarray  # (k,) int64, 1 = the model's top choice
    top_ids: np.ndarray  # (k, K) int64, most likely first
    top_logprobs: np.ndarray  # (k, K) float64


@dataclass(frozen=True)
class WindowLosses:
    """The scored tokens of one window."""

    positions: np.ndarray  # (k,) int64 document token indices, increasing
    nll: np.ndarray  # (k,) float64
    context: np.ndarray  # (k,) int64 tokens the model saw before each (BOS included)
    detail: TokenDetail | None


@dataclass(frozen=True)
class DocumentLosses:
    """The scored tokens of one document: doc token indices, NLL (nats) and context length."""

    tokens: TokenizedDocument
    positions: np.ndarray  # (k,) int64, increasing
    nll: np.ndarray  # (k,) float64
    context: np.ndarray  # (k,) int64
    detail: TokenDetail | None = None


def model_context(model: Any) -> int | None:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def make_plan(loaded: LoadedModel, settings: WindowSettings) -> Plan:
    context = model_context(loaded.model)
    max_length = settings.max_length or min(context or DEFAULT_CONTEXT_CAP, DEFAULT_CONTEXT_CAP)
    if context is not None and max_length > context:
        raise GptlossError(f"--max-length {max_length} exceeds this model's context of {context} tokens")
    stride = settings.stride or max_length
    if stride > max_length:
        raise GptlossError(f"--stride {stride} is larger than --max-length {max_length}")
    bos_id = resolve_bos(loaded.tokenizer, settings.bos)
    return Plan(max_length, stride, settings.bos.value, bos_id, settings.batch_size)


class Scorer:
    """Scores tokenized documents with one loaded model.

    With `top_k` set (0 included) each token also gets entropy, rank and the top_k most likely
    tokens, computed in the same pass over the LM head as the NLL.
    """

    def __init__(self, loaded: LoadedModel, top_k: int | None = None) -> None:
        self.model = loaded.model
        self.device = torch.device(loaded.info.device)
        self.split = split_head(self.model)
        self.top_k = top_k

    def score(
        self, docs: list[TokenizedDocument], plan: Plan, padding_side: str = "right", progress: Progress | None = None
    ) -> list[DocumentLosses]:
        done = dict(self.documents(docs, plan, padding_side, progress))
        return [done[i] for i in range(len(docs))]

    def documents(
        self,
        docs: list[TokenizedDocument],
        plan: Plan,
        padding_side: str = "right",
        progress: Progress | None = None,
        skip: frozenset[int] = frozenset(),
    ) -> Iterator[tuple[int, DocumentLosses]]:
        """(index, losses) of each document as soon as its last window is scored; windows sorted by
        length share batches. Documents in `skip` are not scored (see `windows`)."""
        windows = all_windows(docs, plan, in_order=False)
        left = Counter(w.doc for w in windows)
        for i, doc in enumerate(docs):
            if left[i] == 0 and i not in skip:
                yield i, _assemble(doc, [])
        parts: dict[int, list[WindowLosses]] = defaultdict(list)
        for window, part in self.windows(docs, plan, padding_side, progress, windows=windows, skip=skip):
            parts[window.doc].append(part)
            left[window.doc] -= 1
            if left[window.doc] == 0:
                yield window.doc, _assemble(docs[window.doc], parts.pop(window.doc))

    def windows(
        self,
        docs: list[TokenizedDocument],
        plan: Plan,
        padding_side: str = "right",
        progress: Progress | None = None,
        in_order: bool = False,
        windows: list[Window] | None = None,
        skip: frozenset[int] = frozenset(),
    ) -> Iterator[tuple[Window, WindowLosses]]:
        """Each window's losses as soon as its batch is done.

        in_order: windows come in document order, so a caller can stream each document's tokens as
        they are scored; otherwise windows are sorted by length first (less padding in a batch).
        skip: documents whose windows are not wanted. Batches are formed as if nothing were skipped
        and only those holding a wanted window run, so a resumed run scores each remaining window in
        the same batch, with the same padding, as an uninterrupted one: the same numbers, bit for bit.
        """
        windows = all_windows(docs, plan, in_order) if windows is None else windows
        with torch.inference_mode():
            for batch in batches(windows, plan, self.device):
                if all(w.doc in skip for w in batch):
                    continue
                parts = self._score_batch(docs, batch, plan.bos_token_id, padding_side)
                wanted = [(w, p) for w, p in zip(batch, parts, strict=True) if w.doc not in skip]
                if progress:
                    progress(sum(len(p.positions) for _, p in wanted))
                yield from wanted

    def _score_batch(
        self, docs: list[TokenizedDocument], batch: list[Window], bos_id: int | None, padding_side: str
    ) -> list[WindowLosses]:
        inputs = batch_inputs(docs, batch, bos_id, padding_side, self.device)
        head = self.head_for(inputs)
        stats: torch.Tensor | TokenStats
        if head.linear is None:
            targets = inputs.targets
            stats = (
                logits_nll(head.inputs, targets)
                if self.top_k is None
                else logits_stats(head.inputs, targets, self.top_k)
            )
        elif self.top_k is None:
            stats = head_nll(head.inputs, inputs.targets, head.linear)
        else:
            stats = head_stats(head.inputs, inputs.targets, head.linear, self.top_k)
        nll = _numpy(stats if isinstance(stats, torch.Tensor) else stats.nll)  # (M,)
        detail = None if isinstance(stats, torch.Tensor) else _detail(stats)
        out, lo = [], 0
        for doc_pos, context in inputs.meta:
            hi = lo + len(doc_pos)
            part = None if detail is None else TokenDetail(*(getattr(detail, f.name)[lo:hi] for f in fields(detail)))
            out.append(WindowLosses(doc_pos, nll[lo:hi], context, part))
            lo = hi
        return out

    def head_for(self, batch: BatchInputs) -> Head:
        """What the LM head needs at the scored positions: hidden states with the split-off head,
        else the model's logits there."""
        position_ids = (batch.mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): left padding keeps real positions
        inputs = {
            "input_ids": batch.ids,
            "attention_mask": batch.mask,
            "position_ids": position_ids,
            "use_cache": False,
        }
        rows, cols = batch.rows, batch.cols - 1
        if self.split is not None:
            body, linear = self.split
            return Head(body(**inputs).last_hidden_state[rows, cols], linear)  # (M, D)
        return Head(self.model(**inputs).logits[rows, cols], None)  # (M, V): models whose head we cannot split off


def tokens_to_score(docs: list[TokenizedDocument], plan: Plan, skip: frozenset[int] = frozenset()) -> int:
    """How many tokens the documents not in `skip` will get a loss for (the progress bar's total)."""
    has_bos = plan.bos_token_id is not None
    return sum(doc.n_to_score(has_bos) for i, doc in enumerate(docs) if i not in skip)


def all_windows(docs: list[TokenizedDocument], plan: Plan, in_order: bool) -> list[Window]:
    """Every window that scores a token, of every document: in document order, or longest first
    (similar lengths share a batch). A window whose tokens the loss mask leaves all out is skipped."""
    has_bos = plan.bos_token_id is not None
    windows = [
        w
        for i, d in enumerate(docs)
        for w in plan_windows(i, len(d), plan.max_length, plan.stride, has_bos)
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


def batch_inputs(
    docs: list[TokenizedDocument], batch: list[Window], bos_id: int | None, padding_side: str, device: torch.device
) -> BatchInputs:
    rows_in = [window_inputs(docs[w.doc], w, bos_id) for w in batch]
    width = max(len(r) for r in rows_in)
    ids = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
    prefix = 0 if bos_id is None else 1
    row_idx, col_idx, meta = [], [], []
    for b, (window, row) in enumerate(zip(batch, rows_in, strict=True)):
        pad = width - len(row) if padding_side == "left" else 0
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


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """float64 for floats (sums stay exact enough), int64 otherwise."""
    if tensor.is_floating_point():
        return tensor.double().cpu().numpy()
    return tensor.long().cpu().numpy()


def _detail(stats: TokenStats) -> TokenDetail:
    return TokenDetail(_numpy(stats.entropy), _numpy(stats.rank), _numpy(stats.top_ids), _numpy(stats.top_logprobs))


def _assemble(doc: TokenizedDocument, parts: list[WindowLosses]) -> DocumentLosses:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return DocumentLosses(doc, empty, np.zeros(0, dtype=np.float64), empty)
    positions = np.concatenate([p.positions for p in parts])
    order = np.argsort(positions, kind="stable")
    detail = None
    if parts[0].detail is not None:
        columns = zip(*(vars(p.detail).values() for p in parts), strict=True)
        detail = TokenDetail(*(np.concatenate(column)[order] for column in columns))
    return DocumentLosses(
        tokens=doc,
        positions=positions[order],
        nll=np.concatenate([p.nll for p in parts])[order],
        context=np.concatenate([p.context for p in parts])[order],
        detail=detail,
    )
