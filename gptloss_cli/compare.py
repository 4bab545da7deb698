"""Two models on the same documents: paired NLL deltas, and KL divergence when they share a vocabulary.

Same tokenizer (identical ids for every document, same BOS, same vocabulary size): both
models score exactly the same positions in the same windows, and each batch goes through
both heads in one blocked pass (pairloss.pair_stats): KL(P_A || P_B), Δp and top-1
agreement per position, with no (positions x vocabulary) tensor for either model.

Different tokenizers: each model scores its own tokens; per-token NLL is summed per
whitespace word (the same words for both) and the models are paired word by word, with
bits per byte of the same bytes as the tokenizer-independent headline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .engine import Plan, Progress, Scorer, WindowSettings, all_windows, batch_inputs, batches, make_plan
from .inputs import Document
from .models import LoadedModel
from .pairloss import pair_stats
from .records import word_sums
from .stats import Totals, bootstrap_exp_ci95, scored_text_extent, stderr
from .windows import TokenizedDocument, tokenize

COMPARE_SCHEMA = "gptloss.compare/v1"
PERCENTILES: tuple[tuple[str, float], ...] = (
    *(("max", 100.0), ("99.9", 99.9), ("99", 99.0), ("95", 95.0), ("90", 90.0)),
    *(("50", 50.0), ("10", 10.0), ("5", 5.0), ("1", 1.0), ("min", 0.0)),
)


def _f(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def percentiles(values: np.ndarray) -> dict[str, float] | None:
    if len(values) == 0:
        return None
    points = np.percentile(values, [q for _, q in PERCENTILES])
    return {name: float(v) for (name, _), v in zip(PERCENTILES, points, strict=True)}


def paired(nll_a: np.ndarray, nll_b: np.ndarray, unit: str) -> dict[str, Any]:
    """Mean of B - A over paired units, its standard error, and the correlation of the two NLLs."""
    delta = nll_b - nll_a
    n = len(delta)
    corr = None
    if n > 1 and np.std(nll_a) > 0 and np.std(nll_b) > 0:
        corr = _f(float(np.corrcoef(nll_a, nll_b)[0, 1]))
    mean = float(delta.mean()) if n else None
    return {
        "unit": unit,
        "n": n,
        "mean_delta_nll": mean,
        "stderr": stderr(delta),
        "ppl_ratio": _f(math.exp(mean)) if mean is not None and mean < 700 else None,
        "correlation": corr,
    }


def distribution(kld: np.ndarray, delta_p: np.ndarray, same_top1: np.ndarray) -> dict[str, Any] | None:
    if len(kld) == 0:
        return None
    agree = float(same_top1.mean())
    return {
        "mean_kld": float(kld.mean()),
        "mean_kld_stderr": stderr(kld),
        "kld_percentiles": percentiles(kld),
        "delta_p_mean": float(delta_p.mean()),
        "delta_p_stderr": stderr(delta_p),
        "delta_p_percentiles": percentiles(delta_p),
        "rms_delta_p": float(np.sqrt(np.mean(delta_p**2))),
        "same_top1": agree,
        "same_top1_stderr": math.sqrt(agree * (1 - agree) / len(kld)) if len(kld) > 1 else None,
    }


@dataclass
class DocumentPair:
    """One document's comparison; spans are (start, end) character offsets, one per paired unit."""

    source: str
    text: str
    totals_a: Totals
    totals_b: Totals
    spans: np.ndarray  # (n, 2)
    nll_a: np.ndarray  # (n,)
    nll_b: np.ndarray  # (n,)
    kld: np.ndarray | None = None  # (n,) same vocabulary only
    delta_p: np.ndarray | None = None
    same_top1: np.ndarray | None = None

    def distribution(self) -> dict[str, Any] | None:
        if self.kld is None or self.delta_p is None or self.same_top1 is None:
            return None
        return distribution(self.kld, self.delta_p, self.same_top1)

    def top_differences(self, n: int) -> list[dict[str, Any]]:
        order = np.argsort(-np.abs(self.nll_b - self.nll_a), kind="stable")[:n]
        return [
            {
                "start": int(self.spans[i, 0]),
                "end": int(self.spans[i, 1]),
                "text": self.text[int(self.spans[i, 0]) : int(self.spans[i, 1])],
                "nll_a": float(self.nll_a[i]),
                "nll_b": float(self.nll_b[i]),
                "delta_nll": float(self.nll_b[i] - self.nll_a[i]),
            }
            for i in order
        ]


@dataclass
class CompareResult:
    a: LoadedModel
    b: LoadedModel
    plan: Plan
    same_vocabulary: bool
    documents: list[DocumentPair]
    top_n: int = 10
    bootstrap: int = 0  # document resamples for paired.ppl_ratio_bootstrap_ci95; 0: none
    seed: int = 0

    @property
    def unit(self) -> str:
        return "token" if self.same_vocabulary else "word"

    def totals(self, side: str) -> Totals:
        """One model's corpus totals: its documents' combined, as score does."""
        return Totals.combine([d.totals_a if side == "a" else d.totals_b for d in self.documents])

    def _all(self, name: str) -> np.ndarray:
        arrays = [getattr(d, name) for d in self.documents]
        return np.concatenate(arrays) if arrays else np.zeros(0)

    def to_dict(self) -> dict[str, Any]:
        from .api import settings_dict

        dist = None
        if self.same_vocabulary:
            dist = distribution(self._all("kld"), self._all("delta_p"), self._all("same_top1"))
        total = paired(self._all("nll_a"), self._all("nll_b"), self.unit)
        if self.bootstrap:
            docs = [d for d in self.documents if len(d.nll_a)]
            counts = np.array([len(d.nll_a) for d in docs], dtype=np.float64)  # (D,)
            sums = np.array([math.fsum((d.nll_b - d.nll_a).tolist()) for d in docs])  # (D,)
            ci = bootstrap_exp_ci95(counts, sums, self.bootstrap, self.seed)
            total["ppl_ratio_bootstrap_ci95"] = None if ci is None else list(ci)
            total["bootstrap"] = {"resamples": self.bootstrap, "seed": self.seed, "unit": "document"}
        tops = [{"source": d.source, **t} for d in self.documents for t in d.top_differences(self.top_n)]
        tops.sort(key=lambda t: -abs(t["delta_nll"]))
        return {
            "schema": COMPARE_SCHEMA,
            "a": {"model": self.a.info.to_dict(), "total": self.totals("a").to_dict()},
            "b": {"model": self.b.info.to_dict(), "total": self.totals("b").to_dict()},
            "settings": {**settings_dict(self.plan), "same_vocabulary": self.same_vocabulary, "top_n": self.top_n},
            "documents": [
                {
                    "source": d.source,
                    "a": d.totals_a.to_dict(),
                    "b": d.totals_b.to_dict(),
                    "paired": paired(d.nll_a, d.nll_b, self.unit),
                    "distribution": d.distribution(),
                    "top_differences": d.top_differences(self.top_n),
                }
                for d in self.documents
            ],
            "paired": total,
            "distribution": dist,
            "top_differences": tops[: self.top_n],
        }


def compare_documents(
    a: LoadedModel,
    b: LoadedModel,
    documents: Sequence[Document],
    settings: WindowSettings | None = None,
    top_n: int = 10,
    progress: Progress | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> CompareResult:
    """Score `documents` with both models and pair the results (see the module docstring)."""
    settings = settings or WindowSettings()
    if settings.max_length is None:  # both models must take the windows: the shorter default wins
        shorter = min(make_plan(a, settings).max_length, make_plan(b, settings).max_length)
        settings = replace(settings, max_length=shorter)
    plan_a, plan_b = make_plan(a, settings), make_plan(b, settings)
    tok_a = [tokenize(a.tokenizer, d) for d in documents]
    tok_b = [tokenize(b.tokenizer, d) for d in documents]
    same = (
        plan_a.bos_token_id == plan_b.bos_token_id
        and _vocab(a) == _vocab(b)
        and all(np.array_equal(x.ids, y.ids) for x, y in zip(tok_a, tok_b, strict=True))
    )
    if same:
        docs = _same_vocabulary(a, b, tok_a, plan_a, settings.padding_side, progress)
    else:
        docs = _cross_vocabulary(a, b, tok_a, tok_b, plan_a, plan_b, settings.padding_side, progress)
    return CompareResult(a, b, plan_a, same, docs, top_n, bootstrap, seed)


def _vocab(lm: LoadedModel) -> int:
    return int(lm.model.config.get_text_config().vocab_size)


def _same_vocabulary(
    a: LoadedModel,
    b: LoadedModel,
    docs: list[TokenizedDocument],
    plan: Plan,
    padding_side: str,
    progress: Progress | None,
) -> list[DocumentPair]:
    scorer_a, scorer_b = Scorer(a), Scorer(b)
    windows = all_windows(docs, plan, in_order=False)
    parts: list[list[tuple[np.ndarray, ...]]] = [[] for _ in docs]
    with torch.inference_mode():
        for batch in batches(windows, plan, scorer_a.device):
            inputs = batch_inputs(docs, batch, plan.bos_token_id, padding_side, scorer_a.device)
            stats = pair_stats(scorer_a.head_for(inputs), scorer_b.head_for(inputs), inputs.targets)
            nll_a, nll_b = stats.nll_a.double().cpu().numpy(), stats.nll_b.double().cpu().numpy()
            kld = stats.kld.double().cpu().numpy()
            same = (stats.top1_a == stats.top1_b).cpu().numpy()
            at = 0
            for window, (positions, _context) in zip(batch, inputs.meta, strict=True):
                cut = slice(at, at + len(positions))
                parts[window.doc].append((positions, nll_a[cut], nll_b[cut], kld[cut], same[cut]))
                at += len(positions)
            if progress:
                progress(len(inputs.targets))
    out = []
    for doc, doc_parts in zip(docs, parts, strict=True):
        positions, nll_a, nll_b, kld, same = _ordered(doc_parts)
        starts, ends = doc.owned_spans()
        totals_a = _totals(doc, positions, nll_a)
        totals_b = _totals(doc, positions, nll_b)
        spans = np.stack([starts[positions], ends[positions]], axis=1) if len(positions) else np.zeros((0, 2), int)
        delta_p = np.exp(-nll_b) - np.exp(-nll_a)
        out.append(
            DocumentPair(
                doc.document.source,
                doc.document.text,
                totals_a,
                totals_b,
                spans,
                nll_a,
                nll_b,
                kld,
                delta_p,
                same,
            )
        )
    return out


def _ordered(parts: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    if not parts:
        return [np.zeros(0, dtype=np.int64)] + [np.zeros(0) for _ in range(3)] + [np.zeros(0, dtype=bool)]
    columns = [np.concatenate(c) for c in zip(*parts, strict=True)]
    order = np.argsort(columns[0], kind="stable")
    return [c[order] for c in columns]


def _totals(doc: TokenizedDocument, positions: np.ndarray, nll: np.ndarray) -> Totals:
    n_bytes, n_words = scored_text_extent(doc, positions)
    return Totals.from_nll(nll, n_bytes, n_words)


def _cross_vocabulary(
    a: LoadedModel,
    b: LoadedModel,
    tok_a: list[TokenizedDocument],
    tok_b: list[TokenizedDocument],
    plan_a: Plan,
    plan_b: Plan,
    padding_side: str,
    progress: Progress | None,
) -> list[DocumentPair]:
    losses_a = Scorer(a).score(tok_a, plan_a, padding_side, progress)
    losses_b = Scorer(b).score(tok_b, plan_b, padding_side, progress)
    out = []
    for la, lb in zip(losses_a, losses_b, strict=True):
        words_a, nll_a, scored_a = _per_word(la.tokens, la.positions, la.nll)
        _, nll_b, scored_b = _per_word(lb.tokens, lb.positions, lb.nll)
        both = scored_a & scored_b  # words both models scored whole (not the unscored first token without BOS)
        spans = np.array(words_a, dtype=np.int64).reshape(-1, 2)[both]
        out.append(
            DocumentPair(
                la.tokens.document.source,
                la.tokens.document.text,
                _totals(la.tokens, la.positions, la.nll),
                _totals(lb.tokens, lb.positions, lb.nll),
                spans,
                nll_a[both],
                nll_b[both],
            )
        )
    return out


def _per_word(
    tokens: TokenizedDocument, positions: np.ndarray, nll: np.ndarray
) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """Words of the text, each word's summed NLL, and whether every one of its tokens was scored."""
    words, count, scored, total = word_sums(tokens, positions, nll)
    return words, total, (scored > 0) & (scored == count)
