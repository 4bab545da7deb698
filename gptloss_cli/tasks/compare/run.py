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
from ...core.measures import nll_measure, pair_measure
from ...core.plan import Plan, WindowSettings, make_plan, tokenize_document
from ...core.totals import Bootstrap, document_totals
from ...core.windows import TokenizedDocument
from ...core.words import per_word
from ...errors import GptlossError
from ...inputs.document import Document
from ...models.spec import LoadedModel
from ..documents import refuse_masks
from ..protocols import protocol_card
from .result import CompareResult, DocumentPair


def compare_documents(
    a: LoadedModel,
    b: LoadedModel,
    documents: Sequence[Document],
    settings: WindowSettings | None = None,
    top_n: int = 10,
    progress: Progress | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    world: World = SOLO,
    binoculars: bool = False,
    cache: HeadCache | None = None,
) -> CompareResult:
    """Score `documents` with both models and pair the results (see the module docstring). binoculars: report
    Binoculars with A observing and B performing (same tokenizer only); cache: A's head inputs kept from an
    earlier comparison of the same documents and settings (candidates against one base)."""
    settings = settings or WindowSettings()
    if settings.max_length is None:  # both models must take the windows: the shorter default wins
        shorter = min(make_plan(a, settings).max_length, make_plan(b, settings).max_length)
        settings = replace(settings, max_length=shorter)
    plan_a, plan_b = make_plan(a, settings), make_plan(b, settings)
    refuse_masks(plan_a, documents)
    tok_a = [tokenize_document(plan_a, a.tokenizer, d) for d in documents]
    tok_b = [tokenize_document(plan_b, b.tokenizer, d) for d in documents]
    same = (
        plan_a.bos_token_id == plan_b.bos_token_id
        and _vocab(a) == _vocab(b)
        and all(np.array_equal(x.ids, y.ids) for x, y in zip(tok_a, tok_b, strict=True))
    )
    if binoculars and not same:
        raise GptlossError(
            "--binoculars needs two models with one tokenizer (A observes, B performs): these tokenize differently"
        )
    if same:
        if cache is not None:
            cache.start((plan_a, tuple(hash(t.ids.tobytes()) for t in tok_a)))
        measure = pair_measure(a, b, plan_a.peer_softmax, cache)
        losses = Scorer(measure, a.info.device, world).score(tok_a, plan_a, progress)
        if cache is not None:
            cache.finish()
        docs = [_same_vocabulary(doc, loss) for doc, loss in zip(tok_a, losses, strict=True)]
    else:
        docs = _cross_vocabulary(a, b, tok_a, tok_b, (plan_a, plan_b), progress, world)
    docs = [replace(d, label=doc.label) for d, doc in zip(docs, documents, strict=True)]
    boot = Bootstrap(bootstrap, seed) if bootstrap else None
    return CompareResult(a.info, b.info, plan_a, same, docs, top_n, boot, protocol_card(plan_a, tok_a), binoculars)


def _vocab(lm: LoadedModel) -> int:
    return int(lm.model.config.get_text_config().vocab_size)


def _column(loss: DocumentLosses, name: str, dtype: type) -> np.ndarray:
    """A measured column; a document with no scored token has none, so an empty one."""
    return loss.values.get(name, np.zeros(0, dtype=dtype))


def _same_vocabulary(doc: TokenizedDocument, loss: DocumentLosses) -> DocumentPair:
    positions = loss.positions
    nll_a, nll_b = _column(loss, "nll_a", np.float64), _column(loss, "nll_b", np.float64)
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
        _column(loss, "kld", np.float64),
        np.exp(-nll_b) - np.exp(-nll_a),
        _column(loss, "same_top1", bool),
        kld_reverse=_column(loss, "kld_reverse", np.float64),
        cross_entropy=_column(loss, "cross_entropy", np.float64),
    )


def _cross_vocabulary(
    a: LoadedModel,
    b: LoadedModel,
    tok_a: list[TokenizedDocument],
    tok_b: list[TokenizedDocument],
    plans: tuple[Plan, Plan],
    progress: Progress | None,
    world: World,
) -> list[DocumentPair]:
    softmax = plans[0].peer_softmax
    losses_a = Scorer(nll_measure(a, softmax), a.info.device, world).score(tok_a, plans[0], progress)
    losses_b = Scorer(nll_measure(b, softmax), b.info.device, world).score(tok_b, plans[1], progress)
    out = []
    for ta, tb, la, lb in zip(tok_a, tok_b, losses_a, losses_b, strict=True):
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
