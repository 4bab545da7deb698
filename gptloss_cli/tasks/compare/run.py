"""`compare`: two models on the same documents: paired NLL deltas, and KL divergence when they share a vocabulary.

Same tokenizer (identical ids for every document, same BOS, same vocabulary size): both models score
exactly the same positions in the same windows, and each batch goes through both heads in one blocked
pass (engine.pair_measure): KL(P_A || P_B), Δp and top-1 agreement per position, with no
(positions x vocabulary) tensor for either model.

Different tokenizers: each model scores its own tokens; per-token NLL is summed per whitespace word (the
same words for both) and the models are paired word by word, with bits per byte of the same bytes as the
tokenizer-independent headline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ...core.distributed import SOLO, World
from ...core.engine import DocumentLosses, Progress, Scorer
from ...core.heads import HeadCache
from ...core.measures import PairValues, nll_measure, pair_measure
from ...core.plan import WindowSettings, make_plan
from ...core.totals import Bootstrap, document_totals
from ...core.windows import TokenizedDocument
from ...core.words import per_word
from ...errors import GptlossError
from ...inputs.document import Document
from ...models.spec import LoadedModel
from ..job import Job
from .result import CompareResult, DocumentPair


class CompareJob:
    """The same documents tokenized and planned for two models, in the same windows: each model's Job, with
    the settings both take (without a --max-length, the shorter of the two models' defaults)."""

    def __init__(
        self, a: LoadedModel, b: LoadedModel, documents: Sequence[Document], settings: WindowSettings, world: World
    ) -> None:
        shorter = min(make_plan(a, settings).max_length, make_plan(b, settings).max_length)
        if settings.max_length is None:  # both models must take the windows: the shorter default wins
            settings = replace(settings, max_length=shorter)
        self.a = Job(a, documents, settings, world)
        self.b = Job(b, documents, settings, world)

    @property
    def same_tokens(self) -> bool:
        """Whether both models see the same ids (same BOS, same vocabulary size, identical tokens everywhere):
        then they score the same positions in the same windows."""
        a, b = self.a, self.b
        return (
            a.plan.bos_token_id == b.plan.bos_token_id
            and _vocab(a.loaded) == _vocab(b.loaded)
            and all(np.array_equal(x.ids, y.ids) for x, y in zip(a.tokenized, b.tokenized, strict=True))
        )


def compare_documents(
    a: LoadedModel,
    b: LoadedModel,
    documents: Sequence[Document],
    *,
    settings: WindowSettings | None = None,
    top_n: int = 10,
    bootstrap: Bootstrap | None = None,
    binoculars: bool = False,
    progress: Progress | None = None,
    world: World = SOLO,
    cache: HeadCache | None = None,
) -> CompareResult:
    """Score `documents` with both models and pair the results (see the module docstring).

    Args:
        a: Model A, the reference (deltas are B - A).
        b: Model B.
        documents: What both models score.
        settings: The windows, for both models; without a max_length, the shorter of the models' defaults.
        top_n: How many spans with the largest |Δ NLL| the result lists.
        bootstrap: Document resamples for a 95% interval of B/A (None: none).
        binoculars: Report Binoculars with A observing and B performing (one tokenizer only).
        progress: Called with the number of tokens scored as the work goes on.
        world: The ranks that share the work (core.distributed); every rank gets the whole result.
        cache: A's head inputs kept from an earlier comparison of the same documents and settings (candidates
            against one base).
    """
    job = CompareJob(a, b, documents, settings or WindowSettings(), world)
    same = job.same_tokens
    if binoculars and not same:
        raise GptlossError(
            "--binoculars needs two models with one tokenizer (A observes, B performs): these tokenize differently"
        )
    docs = _same_vocabulary(job, progress, cache) if same else _cross_vocabulary(job, progress)
    docs = [replace(d, label=doc.label) for d, doc in zip(docs, job.a.documents, strict=True)]
    return CompareResult(a.info, b.info, job.a.plan, same, docs, top_n, bootstrap, job.a.card, binoculars)


def _vocab(lm: LoadedModel) -> int:
    return lm.backend.vocab_size


def _same_vocabulary(job: CompareJob, progress: Progress | None, cache: HeadCache | None) -> list[DocumentPair]:
    """One pass of both heads over A's windows (B's are the same)."""
    a, plan = job.a, job.a.plan
    if cache is not None:
        cache.start((plan, tuple(hash(t.ids.tobytes()) for t in a.tokenized)))
    measure = pair_measure(a.loaded, job.b.loaded, plan.peer_softmax, cache)
    losses = Scorer(measure, a.loaded.info.device, a.world).score(a.tokenized, plan, progress)
    if cache is not None:
        cache.finish()
    return [_pair(doc, loss) for doc, loss in zip(a.tokenized, losses, strict=True)]


def _pair(doc: TokenizedDocument, loss: DocumentLosses) -> DocumentPair:
    positions = loss.positions
    pair = loss.values_as(PairValues)
    nll_a, nll_b = pair.nll_a, pair.nll_b
    starts, ends = doc.owned_spans()
    spans = np.stack([starts[positions], ends[positions]], axis=1) if len(positions) else np.zeros((0, 2), int)
    return DocumentPair(
        doc.document.source,
        doc.document.text,
        document_totals(doc, positions, nll_a),
        document_totals(doc, positions, nll_b),
        spans,
        nll_a,
        nll_b,
        pair.kld,
        np.exp(-nll_b) - np.exp(-nll_a),
        pair.same_top1,
        kld_reverse=pair.kld_reverse,
        cross_entropy=pair.cross_entropy,
    )


def _cross_vocabulary(job: CompareJob, progress: Progress | None) -> list[DocumentPair]:
    """Each model over its own windows, paired word by word."""
    softmax = job.a.plan.peer_softmax
    losses_a, losses_b = [
        Scorer(nll_measure(j.loaded, softmax), j.loaded.info.device, j.world).score(j.tokenized, j.plan, progress)
        for j in (job.a, job.b)
    ]
    out = []
    for ta, tb, la, lb in zip(job.a.tokenized, job.b.tokenized, losses_a, losses_b, strict=True):
        words_a, nll_a, scored_a = per_word(ta, la.positions, la.nll)
        _, nll_b, scored_b = per_word(tb, lb.positions, lb.nll)
        both = scored_a & scored_b  # words both models scored whole (not the unscored first token without BOS)
        spans = np.array(words_a, dtype=np.int64).reshape(-1, 2)[both]
        out.append(
            DocumentPair(
                ta.document.source,
                ta.document.text,
                document_totals(ta, la.positions, la.nll),
                document_totals(tb, lb.positions, lb.nll),
                spans,
                nll_a[both],
                nll_b[both],
            )
        )
    return out
