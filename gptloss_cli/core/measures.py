"""What a batch gives at its scored positions, per command: NLL; NLL with μ and σ of log p; NLL with entropy,
rank and top-k; two models at once for compare. Each runs the model's forward pass (core.heads) and reads its
LM head a block at a time; a model that hands its logits over in parts (llama.cpp) is measured part by part
and the parts joined, so every measure sees all of a batch's positions in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..models.spec import LoadedModel
from .batches import BatchInputs
from .fused import compiled_step
from .heads import HeadCache, ModelHead, model_head
from .lmhead import Head
from .loss import head_nll, head_stats, logits_nll, logits_stats, softmax_nll, softmax_stats
from .moments import head_moments, softmax_moments
from .pairloss import pair_stats

Measure = Callable[[BatchInputs], dict[str, torch.Tensor]]  # per scored position: name -> (M, ...)
Values = dict[str, torch.Tensor]


def nll_measure(loaded: LoadedModel, softmax: bool = False) -> Measure:
    """NLL only: the cheapest pass (score, compare across tokenizers). softmax: with torch's float32
    log-softmax over the whole vocabulary, as the peers whose numbers a protocol reproduces compute it."""
    head = model_head(loaded)
    step = compiled_step(loaded.info.device, loaded.info.compiled)  # --compile on an accelerator: fused blocks

    def one(h: Head, targets: torch.Tensor) -> Values:
        if softmax:
            return {"nll": softmax_nll(h, targets)}
        if h.linear is None:
            return {"nll": logits_nll(h.inputs, targets)}
        return {"nll": head_nll(h.inputs, targets, h.linear, step=step)}

    return lambda batch: _joined(one(h, batch.targets[part]) for part, h in head.parts(batch))


def moments_measure(loaded: LoadedModel, softmax: bool = False) -> Measure:
    """NLL, and the mean and standard deviation of log p under the model's distribution (score --membership:
    Min-K%++), in the same blocked pass; softmax: as nll_measure."""
    head = model_head(loaded)

    def one(h: Head, targets: torch.Tensor) -> Values:
        nll, mean, sd = (softmax_moments if softmax else head_moments)(h, targets)
        return {"nll": nll, "mean_logp": mean, "sd_logp": sd}

    return lambda batch: _joined(one(h, batch.targets[part]) for part, h in head.parts(batch))


def stats_measure(loaded: LoadedModel, top_k: int, softmax: bool = False) -> Measure:
    """NLL, entropy, rank and the top_k most likely tokens, in one pass over the LM head (tokens); softmax:
    as nll_measure."""
    head = model_head(loaded)

    def one(h: Head, targets: torch.Tensor) -> Values:
        if softmax:
            stats = softmax_stats(h, targets, top_k)
        elif h.linear is None:
            stats = logits_stats(h.inputs, targets, top_k)
        else:
            stats = head_stats(h.inputs, targets, h.linear, top_k)
        return dict(vars(stats))

    return lambda batch: _joined(one(h, batch.targets[part]) for part, h in head.parts(batch))


def pair_measure(a: LoadedModel, b: LoadedModel, softmax: bool = False, cache: HeadCache | None = None) -> Measure:
    """Both models' NLL, KL both ways, A's cross-entropy into B and top-1 agreement at the same positions
    (compare); softmax: each NLL as nll_measure computes it then (the rest from the blocked pass either way);
    cache: A's head inputs from an earlier pass (HeadCache; not for a backend that lends them in pieces)."""
    head_a, head_b = model_head(a), model_head(b)
    if head_a.in_pieces:
        cache = None

    def one(ha: Head, hb: Head, targets: torch.Tensor) -> Values:
        stats = pair_stats(ha, hb, targets)
        nll_a, nll_b = stats.nll_a, stats.nll_b
        if softmax:
            nll_a, nll_b = softmax_nll(ha, targets), softmax_nll(hb, targets)
        same = stats.top1_a == stats.top1_b
        pair = {"kld": stats.kld, "same_top1": same, "kld_reverse": stats.kld_reverse}
        return {"nll_a": nll_a, "nll_b": nll_b, **pair, "cross_entropy": stats.cross_entropy}

    def measure(batch: BatchInputs) -> Values:
        whole_a = None
        if not head_a.in_pieces:
            whole_a = head_a(batch) if cache is None else cache.get(lambda: head_a(batch))
        parts = _paired(head_a, head_b, batch, whole_a)
        return _joined(one(ha, hb, batch.targets[part]) for part, ha, hb in parts)

    return measure


def _paired(
    head_a: ModelHead, head_b: ModelHead, batch: BatchInputs, whole_a: Head | None
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


def _joined(parts: Iterator[Values]) -> Values:
    """Per-part values joined along positions (one part: as it is)."""
    done = list(parts)
    if len(done) == 1:
        return done[0]
    return {name: torch.cat([p[name] for p in done]) for name in done[0]}
