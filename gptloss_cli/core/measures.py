"""What a batch gives at its scored positions, per command: NLL; NLL with μ and σ of log p; NLL with entropy,
rank and top-k; two models at once for compare. Each runs the model's forward pass (core.heads) and reads its
LM head a block at a time; a model that hands its logits over in parts (llama.cpp) is measured part by part
and the parts joined, so every measure sees all of a batch's positions in order.

What a measure gives is a typed record of per-position columns (NllValues, MomentValues, StatsValues,
PairValues): torch tensors (M, ...) as the measure computes them, numpy arrays once the engine holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np
import torch

from ..models.spec import LoadedModel
from .batches import ModelBatch
from .fused import compiled_step
from .heads import HeadCache, ModelHead, model_head
from .lmhead import Head
from .loss import head_nll, head_stats, logits_nll, logits_stats, softmax_nll, softmax_stats
from .moments import head_moments, softmax_moments
from .pairloss import pair_stats

Column = Any  # a torch.Tensor (M, ...) as a measure gives it, an np.ndarray (k, ...) once the engine holds it
V = TypeVar("V", bound="Values")


def column(dtype: type = np.float64, ndim: int = 1) -> Any:
    """A field of a Values record, with the dtype and rank of its numpy form (what `empty` makes)."""
    return field(metadata={"dtype": dtype, "ndim": ndim})


@dataclass(frozen=True)
class Values:
    """Per-position columns, one per field, each of the same length along its first axis: what a measure
    gives for a batch, and the engine keeps per window and per document."""

    def columns(self) -> dict[str, Column]:
        """name -> column, in field order (what the ranks exchange: core.distributed sends named arrays)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def of(cls: type[V], columns: Mapping[str, Column]) -> V:
        return cls(**{f.name: columns[f.name] for f in fields(cls)})

    def map(self: V, change: Callable[[Column], Column]) -> V:
        """The same record with `change` applied to every column."""
        return type(self)(**{name: change(value) for name, value in self.columns().items()})

    def to_numpy(self: V) -> V:
        """float64 for floats (sums stay exact enough), bool as it is, int64 otherwise."""
        return self.map(_numpy)

    def take(self: V, lo: int, hi: int) -> V:
        """Positions [lo, hi) only."""
        return self.map(lambda value: value[lo:hi])

    @classmethod
    def concat(cls: type[V], parts: Sequence[V]) -> V:
        """Parts joined along positions (torch tensors or numpy arrays, as the parts hold them)."""
        return cls(**{f.name: _cat([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    @classmethod
    def empty(cls: type[V]) -> V:
        """No position: each column an empty numpy array of its dtype and rank."""
        return cls(**{f.name: np.zeros((0,) * f.metadata["ndim"], dtype=f.metadata["dtype"]) for f in fields(cls)})


@dataclass(frozen=True)
class NllValues(Values):
    nll: Column = column()  # (M,) -log p(target), nats


@dataclass(frozen=True)
class MomentValues(NllValues):
    """NLL with the mean and standard deviation of log p under the model's distribution (Min-K%++)."""

    mean_logp: Column = column()  # (M,)
    sd_logp: Column = column()  # (M,)


@dataclass(frozen=True)
class StatsValues(NllValues):
    """NLL with entropy, the target's rank and the top-k tokens (core.loss.TokenStats)."""

    entropy: Column = column()  # (M,) nats
    rank: Column = column(np.int64)  # (M,) 1 = the target is the most likely token
    top_ids: Column = column(np.int64, ndim=2)  # (M, K) most likely first
    top_logprobs: Column = column(ndim=2)  # (M, K)


@dataclass(frozen=True)
class PairValues(Values):
    """Two models at the same positions (compare)."""

    nll_a: Column = column()  # (M,)
    nll_b: Column = column()  # (M,)
    kld: Column = column()  # (M,) KL(P_A || P_B)
    same_top1: Column = column(np.bool_)  # (M,) both models' most likely token is the same
    kld_reverse: Column = column()  # (M,) KL(P_B || P_A)
    cross_entropy: Column = column()  # (M,) -Σ_v P_A(v) log P_B(v)


@dataclass(frozen=True)
class Measure:
    """What a batch gives at its scored positions: `run` (ModelBatch -> a record of type `kind`)."""

    kind: type[Values]
    run: Callable[[ModelBatch], Values]

    def __call__(self, batch: ModelBatch) -> Values:
        return self.run(batch)


def nll_measure(loaded: LoadedModel, softmax: bool = False) -> Measure:
    """NLL only: the cheapest pass (score, compare across tokenizers). softmax: with torch's float32
    log-softmax over the whole vocabulary, as the peers whose numbers a protocol reproduces compute it."""
    head = model_head(loaded)
    step = compiled_step(loaded.info.device, loaded.info.compiled)  # --compile on an accelerator: fused blocks

    def one(h: Head, targets: torch.Tensor) -> NllValues:
        if softmax:
            return NllValues(softmax_nll(h, targets))
        if h.linear is None:
            return NllValues(logits_nll(h.inputs, targets))
        return NllValues(head_nll(h.inputs, targets, h.linear, step=step))

    return Measure(NllValues, lambda batch: _joined(one(h, batch.targets[part]) for part, h in head.parts(batch)))


def moments_measure(loaded: LoadedModel, softmax: bool = False) -> Measure:
    """NLL, and the mean and standard deviation of log p under the model's distribution (score --membership:
    Min-K%++), in the same blocked pass; softmax: as nll_measure."""
    head = model_head(loaded)

    def one(h: Head, targets: torch.Tensor) -> MomentValues:
        nll, mean, sd = (softmax_moments if softmax else head_moments)(h, targets)
        return MomentValues(nll, mean, sd)

    return Measure(MomentValues, lambda batch: _joined(one(h, batch.targets[part]) for part, h in head.parts(batch)))


def stats_measure(loaded: LoadedModel, top_k: int, softmax: bool = False) -> Measure:
    """NLL, entropy, rank and the top_k most likely tokens, in one pass over the LM head (tokens); softmax:
    as nll_measure."""
    head = model_head(loaded)

    def one(h: Head, targets: torch.Tensor) -> StatsValues:
        if softmax:
            stats = softmax_stats(h, targets, top_k)
        elif h.linear is None:
            stats = logits_stats(h.inputs, targets, top_k)
        else:
            stats = head_stats(h.inputs, targets, h.linear, top_k)
        return StatsValues(stats.nll, stats.entropy, stats.rank, stats.top_ids, stats.top_logprobs)

    return Measure(StatsValues, lambda batch: _joined(one(h, batch.targets[part]) for part, h in head.parts(batch)))


def pair_measure(a: LoadedModel, b: LoadedModel, softmax: bool = False, cache: HeadCache | None = None) -> Measure:
    """Both models' NLL, KL both ways, A's cross-entropy into B and top-1 agreement at the same positions
    (compare); softmax: each NLL as nll_measure computes it then (the rest from the blocked pass either way);
    cache: A's head inputs from an earlier pass (HeadCache; not for a backend that lends them in pieces)."""
    head_a, head_b = model_head(a), model_head(b)
    if head_a.in_pieces:
        cache = None

    def one(ha: Head, hb: Head, targets: torch.Tensor) -> PairValues:
        stats = pair_stats(ha, hb, targets)
        nll_a, nll_b = stats.nll_a, stats.nll_b
        if softmax:
            nll_a, nll_b = softmax_nll(ha, targets), softmax_nll(hb, targets)
        same = stats.top1_a == stats.top1_b
        return PairValues(nll_a, nll_b, stats.kld, same, stats.kld_reverse, stats.cross_entropy)

    def measure(batch: ModelBatch) -> PairValues:
        whole_a = None
        if not head_a.in_pieces:
            whole_a = head_a(batch) if cache is None else cache.get(lambda: head_a(batch))
        parts = _paired(head_a, head_b, batch, whole_a)
        return _joined(one(ha, hb, batch.targets[part]) for part, ha, hb in parts)

    return Measure(PairValues, measure)


def _paired(
    head_a: ModelHead, head_b: ModelHead, batch: ModelBatch, whole_a: Head | None
) -> Iterator[tuple[slice, Head, Head]]:
    """Both heads over the same parts of the batch's positions: the parts of a head handed over in pieces
    (llama.cpp's), with the other head's rows cut to match (two such heads part a batch the same way)."""
    if whole_a is not None and not head_b.in_pieces:
        yield slice(None), whole_a, head_b(batch)
    elif whole_a is not None:
        for part, hb in head_b.parts(batch):
            yield part, whole_a.rows(part), hb
    elif not head_b.in_pieces:
        whole_b = head_b(batch)
        for part, ha in head_a.parts(batch):
            yield part, ha, whole_b.rows(part)
    else:
        for (part, ha), (_, hb) in zip(head_a.parts(batch), head_b.parts(batch), strict=True):
            yield part, ha, hb


def _joined(parts: Iterator[V]) -> V:
    """Per-part values joined along positions (one part: as it is)."""
    done = list(parts)
    if len(done) == 1:
        return done[0]
    return type(done[0]).concat(done)


def _cat(columns: list[Column]) -> Column:
    return torch.cat(columns) if isinstance(columns[0], torch.Tensor) else np.concatenate(columns)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """float64 for floats (sums stay exact enough), bool as it is, int64 otherwise."""
    if tensor.is_floating_point():
        return tensor.double().cpu().numpy()
    if tensor.dtype == torch.bool:
        return tensor.cpu().numpy()
    return tensor.long().cpu().numpy()
