"""The Backend protocol alone: a backend written here around a tiny torch model, handing over logits only
(whole, or lent in pieces as llama.cpp's are), run through `score`, `tokens` and `compare` with no other
knowledge of it. Each token's NLL is checked against torch's log-softmax of the same model's logits."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from gptloss_cli.core.plan import WindowSettings, make_plan
from gptloss_cli.core.windows import tokenize
from gptloss_cli.errors import GptlossError
from gptloss_cli.inputs.document import Document
from gptloss_cli.models.backend import Backend, BorrowedLogits, Head
from gptloss_cli.models.spec import LoadedModel
from gptloss_cli.tasks.compare import compare_documents
from gptloss_cli.tasks.score import score_documents
from gptloss_cli.tasks.tokens import TokenRun

# nats, absolute: the engine's float32 blocked log-sum-exp of a batched (padded) forward pass against a float64
# log-softmax of the same model's float32 logits for the document alone
TOL = 1e-5
TEXTS = [
    "The cat sat on the mat, and then the dog sat on the log.",
    "Perplexity 42!",
    "Zählt die Wörter: naïve café, 7 Birnen.",
    "def plan(length, size, step):\n    return list(range(0, length, step))\n",
]
CONTEXT = 100  # what the fake backend says the model was trained for (the tiny model takes 128)


class LogitsBackend:
    """A causal LM's logits at the scored positions, as the protocol asks: whole (the caller's to keep), or in
    pieces of `piece` positions, each lent. `shift` 0 reads the logits at the target's own position instead
    of the one before it: a wrong backend, which the checks below must catch."""

    def __init__(self, model: Any, piece: int | None = None, shift: int = 1) -> None:
        self.model, self.piece, self.shift = model, piece, shift

    @property
    def context_length(self) -> int:
        return CONTEXT

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def in_pieces(self) -> bool:
        return self.piece is not None

    def heads(
        self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> Iterator[tuple[slice, Head]]:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits  # (B, T, V)
        at = logits[rows, cols - self.shift]  # (M, V)
        if self.piece is None:
            yield slice(None), Head(at, None)
            return
        lent = BorrowedLogits(self.vocab_size)
        for lo in range(0, at.shape[0], self.piece):
            part = slice(lo, min(lo + self.piece, at.shape[0]))
            yield part, Head(at[part].contiguous(), lent)


def fake(lm: LoadedModel, backend: Backend) -> LoadedModel:
    return LoadedModel(backend, lm.tokenizer, replace(lm.info, spec="fake", backend="fake"))


def reference(lm: LoadedModel, doc: Document) -> tuple[list[int], torch.Tensor]:
    """(the document's token ids, log p (n, V) before each) from torch's log-softmax of the model's own logits
    over BOS and the whole document, in float64."""
    ids = tokenize(lm.tokenizer, doc).ids.tolist()
    full = torch.tensor([[lm.tokenizer.bos_token_id, *ids]])
    with torch.inference_mode():
        return ids, torch.log_softmax(lm.model(input_ids=full).logits[0, :-1].double(), dim=-1)


def reference_nll(lm: LoadedModel, doc: Document) -> np.ndarray:
    ids, logp = reference(lm, doc)
    return -logp[torch.arange(len(ids)), torch.tensor(ids)].numpy()


DOCS = [Document(t, f"t{i}") for i, t in enumerate(TEXTS)]
SETTINGS = WindowSettings(batch_size=3)  # one window a document (the model's context), padded batches
KINDS = {"whole": None, "pieces of 5": 5, "pieces of 1": 1}


@pytest.mark.parametrize("piece", KINDS.values(), ids=KINDS.keys())
def test_score_through_the_protocol_alone(loaded, piece: int | None) -> None:
    lm = loaded["llama"]
    result = score_documents(fake(lm, LogitsBackend(lm.model, piece)), DOCS, SETTINGS)
    assert result.plan.max_length == CONTEXT  # the backend's context sets the default window
    for doc, score in zip(DOCS, result.documents, strict=True):
        ids, nll = tokenize(lm.tokenizer, doc).ids.tolist(), reference_nll(lm, doc)
        assert score.losses is not None and score.losses.positions.tolist() == list(range(len(ids)))
        np.testing.assert_allclose(score.losses.nll, nll, rtol=0, atol=TOL)
        assert score.totals.tokens_scored == len(ids)


@pytest.mark.parametrize("piece", KINDS.values(), ids=KINDS.keys())
def test_tokens_through_the_protocol_alone(loaded, piece: int | None) -> None:
    lm = loaded["llama"]
    run = TokenRun(fake(lm, LogitsBackend(lm.model, piece)), DOCS, SETTINGS, top_k=3)
    got: dict[int, list[Any]] = {}
    for chunk in run.chunks():
        got.setdefault(chunk.doc, []).extend(chunk.records)
    for i, doc in enumerate(DOCS):
        ids, logp = reference(lm, doc)
        records = got[i]
        assert [r.token_id for r in records] == ids and [r.index for r in records] == list(range(len(ids)))
        np.testing.assert_allclose([r.nll for r in records], reference_nll(lm, doc), rtol=0, atol=TOL)
        entropy = -(logp.exp() * logp).sum(dim=-1)
        np.testing.assert_allclose([r.entropy for r in records], entropy.numpy(), rtol=0, atol=TOL)
        top = logp.max(dim=-1).values
        np.testing.assert_allclose([r.top[0].logprob for r in records], top.numpy(), rtol=0, atol=TOL)


def test_compare_pairs_a_whole_backend_with_one_in_pieces(loaded) -> None:
    """The same model through both kinds: the pair's parts line up, so the NLLs agree and the KL is ~0."""
    lm = loaded["llama"]
    a, b = fake(lm, LogitsBackend(lm.model)), fake(lm, LogitsBackend(lm.model, piece=4))
    result = compare_documents(a, b, DOCS, settings=SETTINGS)
    for doc, pair in zip(DOCS, result.documents, strict=True):
        nll = reference_nll(lm, doc)
        np.testing.assert_allclose(pair.nll_a, nll, rtol=0, atol=TOL)
        np.testing.assert_allclose(pair.nll_b, nll, rtol=0, atol=TOL)
        assert pair.kld is not None and np.all(np.abs(pair.kld) < TOL)


def test_a_backend_that_reads_the_wrong_positions_is_caught(loaded) -> None:
    """The check above can fail: logits read one position late give other numbers, far beyond TOL."""
    lm = loaded["llama"]
    result = score_documents(fake(lm, LogitsBackend(lm.model, shift=0)), DOCS, SETTINGS)
    docs = zip(DOCS, result.documents, strict=True)
    worst = max(float(np.abs(s.losses.nll - reference_nll(lm, d)).max()) for d, s in docs)
    assert worst > 100 * TOL


def test_the_backends_context_bounds_the_windows(loaded) -> None:
    lm = loaded["llama"]
    with pytest.raises(GptlossError, match=f"exceeds this model's context of {CONTEXT} tokens"):
        make_plan(fake(lm, LogitsBackend(lm.model)), WindowSettings(max_length=CONTEXT + 1))
