"""`compare`: KL divergence and paired deltas against direct computations, both vocabulary paths, the CLI."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_model_dir, run

from gptloss_cli.core.distributed import SOLO
from gptloss_cli.core.lmhead import Head, LinearHead
from gptloss_cli.core.pairloss import pair_stats
from gptloss_cli.core.plan import WindowSettings
from gptloss_cli.core.windows import tokenize
from gptloss_cli.inputs.document import Document
from gptloss_cli.tasks.compare import compare_documents
from gptloss_cli.tasks.score import score_documents

TEXTS = [
    "The cat sat on the mat, and then the dog sat on the log.",
    "Zählt die Wörter: naïve café, 7 Birnen.\n\n  Perplexity is the exponential of the mean NLL.",
]


def docs() -> list[Document]:
    return [Document(t, f"t{i}") for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def other_tokenizer_model(tmp_path_factory: pytest.TempPathFactory):
    """A tiny Llama whose tokenizer has a different vocabulary."""
    from gptloss_cli.models.loader import load_model

    path = build_model_dir(tmp_path_factory.mktemp("other"), "llama", seed=3, vocab_size=290)
    return load_model(str(path))


def test_hand_computed_three_token_vocabulary() -> None:
    p_a, p_b = [0.1, 0.3, 0.6], [0.4, 0.1, 0.5]
    kl = sum(x * math.log(x / y) for x, y in zip(p_a, p_b, strict=True))
    logits_a, logits_b = torch.tensor([p_a]).log(), torch.tensor([p_b]).log()
    for vocab_block in (1, 2, 3):
        for a, b in [
            (Head(logits_a, None), Head(logits_b, None)),
            (Head(torch.eye(3)[:1] * 0 + logits_a, None), Head(torch.ones(1, 1), LinearHead(logits_b.T, None, None))),
        ]:
            stats = pair_stats(a, b, torch.tensor([1]), vocab_block=vocab_block)
            assert math.isclose(stats.kld.item(), kl, rel_tol=1e-6)
            assert math.isclose(stats.nll_a.item(), -math.log(0.3), rel_tol=1e-6)
            assert math.isclose(stats.nll_b.item(), -math.log(0.1), rel_tol=1e-6)
            assert stats.top1_a.item() == stats.top1_b.item() == 2
    stats = pair_stats(Head(logits_a, None), Head(logits_b.flip(1), None), torch.tensor([0]))
    assert stats.top1_b.item() == 0  # p_b reversed: [0.5, 0.1, 0.4]


@pytest.mark.parametrize(
    ("p_a", "p_b"),
    [([0.2, 0.3, 0.0, 0.5], [0.4, 0.1, 0.0, 0.5]), ([0.5, 0.0, 0.5, 0.0], [0.2, 0.3, 0.5, 0.0])],
    ids=["both-mask-a-token", "only-a-masks-a-token"],
)
def test_masked_tokens_against_direct_sums(p_a: list[float], p_b: list[float]) -> None:
    """Tokens with probability 0 (logit -inf) in one or both models, each vocabulary block size, logits given
    whole or through a linear head: KL both ways and the cross-entropy against the sums written out."""

    def kl(p: list[float], q: list[float]) -> float:
        terms = [x * math.log(x / y) if y > 0 else math.inf for x, y in zip(p, q, strict=True) if x > 0]
        return sum(terms)

    cross = -sum(x * math.log(y) for x, y in zip(p_a, p_b, strict=True) if x > 0)
    logits_a, logits_b = torch.tensor([p_a]).log(), torch.tensor([p_b]).log()  # (1, 4), -inf where p = 0
    for vocab_block in (1, 2, 3, 4):
        for b in (Head(logits_b, None), Head(torch.ones(1, 1), LinearHead(logits_b.T.clone(), None, None))):
            stats = pair_stats(Head(logits_a.clone(), None), b, torch.tensor([0]), vocab_block=vocab_block)
            assert math.isclose(stats.kld.item(), kl(p_a, p_b), rel_tol=1e-6), vocab_block
            if math.isfinite(kl(p_b, p_a)):  # where B gives mass to a token A masks, it stands at float32's max
                assert math.isclose(stats.kld_reverse.item(), kl(p_b, p_a), rel_tol=1e-6)
            assert math.isclose(stats.cross_entropy.item(), cross, rel_tol=1e-6)
            assert torch.equal(logits_a, torch.tensor([p_a]).log())  # logits given whole are left as they were


def test_model_against_itself_is_exactly_zero(loaded) -> None:
    lm = loaded["gemma3"]
    result = compare_documents(lm, lm, docs(), settings=WindowSettings(max_length=12, stride=5, batch_size=3))
    assert result.same_vocabulary
    data = result.to_dict()
    for doc in result.documents:
        assert np.all(doc.kld == 0) and np.all(doc.same_top1) and np.all(doc.delta_p == 0)
        np.testing.assert_array_equal(doc.nll_a, doc.nll_b)
    assert data["distribution"]["mean_kld"] == 0 and data["distribution"]["same_top1"] == 1
    assert data["paired"]["mean_delta_nll"] == 0 and data["paired"]["ppl_ratio"] == 1


def test_same_vocabulary_against_full_log_softmax(loaded) -> None:
    a, b = loaded["gpt2"], loaded["llama"]
    result = compare_documents(a, b, docs(), settings=WindowSettings(batch_size=2))
    assert result.same_vocabulary
    for doc, pair in zip(docs(), result.documents, strict=True):
        ids = torch.tensor([[1, *tokenize(a.tokenizer, doc).ids.tolist()]])
        with torch.no_grad():
            la = torch.log_softmax(a.model(input_ids=ids).logits[0, :-1].double(), -1)  # (n, V)
            lb = torch.log_softmax(b.model(input_ids=ids).logits[0, :-1].double(), -1)
        target = ids[0, 1:].unsqueeze(1)
        np.testing.assert_allclose(pair.kld, (la.exp() * (la - lb)).sum(-1).numpy(), atol=1e-5)
        np.testing.assert_allclose(pair.nll_a, -la.gather(1, target).squeeze(1).numpy(), atol=1e-5)
        np.testing.assert_allclose(pair.nll_b, -lb.gather(1, target).squeeze(1).numpy(), atol=1e-5)
        expected_dp = lb.gather(1, target).exp() - la.gather(1, target).exp()
        np.testing.assert_allclose(pair.delta_p, expected_dp.squeeze(1).numpy(), atol=1e-5)
        np.testing.assert_array_equal(pair.same_top1, (la.argmax(-1) == lb.argmax(-1)).numpy())


def test_paired_stderr_against_numpy(loaded) -> None:
    a, b = loaded["gpt2"], loaded["gemma3"]
    data = compare_documents(a, b, docs(), settings=WindowSettings(max_length=16, stride=8)).to_dict()
    nll_a = np.concatenate(
        [d.losses.nll for d in score_documents(a, docs(), WindowSettings(max_length=16, stride=8)).documents]
    )
    nll_b = np.concatenate(
        [d.losses.nll for d in score_documents(b, docs(), WindowSettings(max_length=16, stride=8)).documents]
    )
    delta = nll_b - nll_a
    assert data["paired"]["n"] == len(delta)
    assert math.isclose(data["paired"]["mean_delta_nll"], delta.mean(), rel_tol=1e-6)
    assert math.isclose(data["paired"]["stderr"], delta.std(ddof=1) / math.sqrt(len(delta)), rel_tol=1e-6)
    assert math.isclose(data["paired"]["correlation"], np.corrcoef(nll_a, nll_b)[0, 1], rel_tol=1e-6)
    assert math.isclose(data["b"]["total"]["nll_sum"], nll_b.sum(), rel_tol=1e-9)


def test_different_tokenizers_pair_by_word(loaded, other_tokenizer_model) -> None:
    a, b = loaded["llama"], other_tokenizer_model
    assert len(tokenize(a.tokenizer, docs()[1])) != len(tokenize(b.tokenizer, docs()[1]))
    result = compare_documents(a, b, docs(), settings=WindowSettings(max_length=16, stride=8), top_n=5)
    assert not result.same_vocabulary
    data = result.to_dict()
    assert data["distribution"] is None and data["paired"]["unit"] == "word"
    for doc, pair in zip(docs(), result.documents, strict=True):
        words = doc.text.split()
        assert len(pair.nll_a) == len(words)
        assert [doc.text[s:e] for s, e in pair.spans.tolist()] == words
        assert math.isclose(pair.nll_a.sum(), pair.totals_a.nll_sum, rel_tol=1e-9)  # every token is in a word
        assert math.isclose(pair.nll_b.sum(), pair.totals_b.nll_sum, rel_tol=1e-9)
    for top in data["top_differences"]:
        text = next(d.text for d in docs() if d.source == top["source"])
        assert text[top["start"] : top["end"]] == top["text"]
        assert math.isclose(top["delta_nll"], top["nll_b"] - top["nll_a"], abs_tol=1e-12)
    deltas = [abs(t["delta_nll"]) for t in data["top_differences"]]
    assert deltas == sorted(deltas, reverse=True) and len(deltas) == 5


def test_cli_json_table_and_html(model_dirs, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text('The cat <script>alert("x")</script> & "dog".', encoding="utf-8")
    report = tmp_path / "c.html"
    args = ["compare", str(model_dirs["gpt2"]), str(model_dirs["llama"]), str(path)]
    result = run(*args, "--format", "json", "--html", report)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == f"wrote {report}\n"
    data = json.loads(result.stdout)
    assert set(data) == {"schema", "a", "b", "settings", "documents", "paired", "distribution", "top_differences"}
    assert data["schema"] == "gptloss.compare/v1"
    llama_cpp = {"ln_ppl_a", "ln_ppl_a_stderr", "ln_ppl_b", "ln_ppl_b_stderr", "ln_ppl_covariance"}
    llama_cpp |= {"ln_ppl_ratio", "ln_ppl_ratio_stderr", "ln_ppl_correlation"}
    assert set(data["paired"]) == {"unit", "n", "mean_delta_nll", "stderr", "ppl_ratio", "correlation", *llama_cpp}
    assert list(data["distribution"]["kld_percentiles"]) == "max 99.9 99 95 90 50 10 5 1 0.1 min".split()
    assert list(data["distribution"]["delta_p_percentiles"]) == "max 99.9 99 95 90 75 50 25 10 5 1 0.1 min".split()
    page = report.read_text(encoding="utf-8")
    assert "<script" not in page
    assert path.read_text(encoding="utf-8") in html.unescape(re.sub(r"<[^>]+>", "", page))  # intact, as text
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    assert "KL(A‖B)" in result.stdout and "largest |Δ NLL|" in result.stdout
    empty = tmp_path / "e.txt"
    empty.write_text("", encoding="utf-8")
    result = run("compare", model_dirs["gpt2"], model_dirs["llama"], empty)
    assert result.exit_code == 1 and "nothing to compare" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cross_tokenizer_pairs_only_whole_words(loaded, other_tokenizer_model) -> None:
    """Without BOS the first token is not scored: the first word is then left out, not half counted."""
    a, b = loaded["llama-nobos"], other_tokenizer_model
    result = compare_documents(a, b, docs(), settings=WindowSettings(max_length=16, stride=8))
    assert not result.same_vocabulary
    for doc, pair in zip(docs(), result.documents, strict=True):
        words = doc.text.split()
        assert [doc.text[s:e] for s, e in pair.spans.tolist()] == words[1:]


def test_both_models_take_the_windows_of_the_shorter_context(loaded) -> None:
    """CompareJob plans both models with the shorter of their default max_lengths, and tokenizes through Job."""
    import dataclasses

    from gptloss_cli.tasks.compare.run import CompareJob
    from gptloss_cli.tasks.job import Job

    class Short:
        """The same backend, as if its model's context were 32 tokens."""

        context_length = 32

        def __init__(self, inner) -> None:
            self.inner = inner

        def __getattr__(self, name: str):
            return getattr(self.inner, name)

    lm = loaded["llama"]
    short = dataclasses.replace(lm, backend=Short(lm.backend))
    job = CompareJob(lm, short, docs(), WindowSettings(), world=SOLO)
    assert isinstance(job.a, Job) and isinstance(job.b, Job)
    assert job.a.plan.max_length == job.b.plan.max_length == 32
    assert job.same_tokens
    given = CompareJob(lm, short, docs(), WindowSettings(max_length=16), world=SOLO)
    assert given.a.plan.max_length == given.b.plan.max_length == 16
