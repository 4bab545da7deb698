"""Per-token NLL from the engine against the models' own `labels=` loss, batching and windows."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import ARCHS, labels_loss_sum

from gptloss_cli.core.plan import WindowSettings, make_plan
from gptloss_cli.core.windows import plan_windows, tokenize
from gptloss_cli.inputs.document import Document
from gptloss_cli.models.hf import KNOWN_HEADS, TransformersBackend, head_matches, split_head
from gptloss_cli.tasks.score import score_documents

TEXTS = [
    "The cat sat on the mat, and then the dog sat on the log.",
    "Perplexity 42!",
    "Zählt die Wörter: naïve café, 7 Birnen.",
    "x",
    "def plan(length, size, step):\n    return list(range(0, length, step))\n" * 2,
]


@pytest.mark.parametrize("arch", [*ARCHS, "llama-nobos"])
def test_matches_labels_loss(loaded, arch: str) -> None:
    lm = loaded[arch]
    docs = [Document(t, f"t{i}") for i, t in enumerate(TEXTS)]
    result = score_documents(lm, docs, WindowSettings(batch_size=1))
    bos = lm.tokenizer.bos_token_id
    assert (bos is None) == (arch == "llama-nobos")
    for doc, score in zip(docs, result.documents, strict=True):
        ids = lm.tokenizer.encode(doc.text)[0].tolist()
        full = ([bos] if bos is not None else []) + ids
        if len(full) < 2:
            assert score.totals.tokens_scored == 0
            continue
        expected, count = labels_loss_sum(lm.model, full)
        assert score.totals.tokens_scored == count
        assert math.isclose(score.totals.nll_sum, expected, rel_tol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_equals_one_at_a_time(loaded, arch: str, side: str) -> None:
    lm = loaded[arch]
    docs = [Document(t, f"t{i}") for i, t in enumerate(TEXTS)]
    one = score_documents(lm, docs, WindowSettings(batch_size=1))
    many = score_documents(lm, docs, WindowSettings(batch_size=5, padding_side=side))
    for a, b in zip(one.documents, many.documents, strict=True):
        assert a.totals.tokens_scored == b.totals.tokens_scored
        np.testing.assert_allclose(b.losses.nll, a.losses.nll, rtol=1e-6, atol=1e-6)
    assert math.isclose(one.total.nll_sum, many.total.nll_sum, rel_tol=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "llama-nobos", "gemma3"])
@pytest.mark.parametrize(("max_length", "stride"), [(8, 8), (8, 3), (5, 1), (16, 10)])
def test_windows_against_direct_computation(loaded, arch: str, max_length: int, stride: int) -> None:
    """Each window's scored tokens equal the labels= loss of that window's input, computed directly."""
    lm = loaded[arch]
    doc = Document(TEXTS[4], "code")
    settings = WindowSettings(max_length=max_length, stride=stride, batch_size=3)
    result = score_documents(lm, [doc], settings)
    tokens = tokenize(lm.tokenizer, doc)
    bos = lm.tokenizer.bos_token_id
    prefix = [] if bos is None else [bos]
    first = 0 if bos is not None else 1
    scored = result.documents[0].losses
    assert scored.positions.tolist() == list(range(first, len(tokens)))  # each token exactly once
    expected = np.zeros(len(tokens))
    for w in plan_windows(0, len(tokens), max_length, stride, bos is not None):
        ids = torch.tensor([prefix + tokens.ids[w.start : w.end].tolist()])
        with torch.no_grad():
            logits = lm.model(input_ids=ids).logits[0].double()  # (T, V)
        logp = torch.log_softmax(logits, -1)
        for i in range(w.score_start, w.end):
            pos = len(prefix) + i - w.start
            expected[i] = -logp[pos - 1, ids[0, pos]].item()
    np.testing.assert_allclose(scored.nll, expected[first:], rtol=1e-5, atol=1e-5)
    assert scored.context.max() <= max_length - 1


@pytest.mark.parametrize("arch", ["gpt2", "gemma3"])
def test_one_big_window_equals_no_windowing(loaded, arch: str) -> None:
    lm = loaded[arch]
    doc = Document(TEXTS[0], "t")
    n = len(tokenize(lm.tokenizer, doc)) + 1
    big = score_documents(lm, [doc], WindowSettings(max_length=n, stride=n))
    default = score_documents(lm, [doc], WindowSettings())
    np.testing.assert_array_equal(big.documents[0].losses.nll, default.documents[0].losses.nll)


def test_zero_logits_give_exactly_log_vocab(model_dirs) -> None:
    from gptloss_cli.models.loader import load_model

    lm = load_model(str(model_dirs["llama"]))
    with torch.no_grad():
        lm.model.lm_head.weight.zero_()
    result = score_documents(lm, [Document(TEXTS[0], "t")])
    vocab = lm.model.config.vocab_size
    assert np.all(np.abs(result.documents[0].losses.nll - math.log(vocab)) <= 1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_known_heads_reproduce_model_logits(loaded, arch: str) -> None:
    """The split (body + head) path must equal the model's own logits for every listed type."""
    lm = loaded[arch]
    assert lm.model.config.model_type in KNOWN_HEADS
    head = TransformersBackend(lm.model)
    assert head.split is not None
    assert head_matches(lm.model, *head.split)


def test_other_known_head_types() -> None:
    from transformers import AutoModelForCausalLM, Gemma2Config, MistralConfig, Qwen2Config

    small = {
        "num_hidden_layers": 1,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": 50,
        "max_position_embeddings": 32,
    }
    for config in (MistralConfig(**small), Qwen2Config(**small), Gemma2Config(head_dim=8, **small)):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).eval()
        assert config.model_type in KNOWN_HEADS
        split = split_head(model)
        assert split is not None and head_matches(model, *split)


def test_plan_defaults_and_limits(loaded) -> None:
    from gptloss_cli.errors import GptlossError

    lm = loaded["gpt2"]
    plan = make_plan(lm, WindowSettings())
    assert (plan.max_length, plan.stride, plan.bos_token_id) == (128, 128, 1)
    with pytest.raises(GptlossError, match="exceeds"):
        make_plan(lm, WindowSettings(max_length=129))
    with pytest.raises(GptlossError, match="stride"):
        make_plan(lm, replace(WindowSettings(), max_length=8, stride=9))


@pytest.mark.parametrize(("max_length", "batch_size"), [(2048, 8), (1024, 8), (100, 1000), (9000, 3)])
def test_batches_respect_the_token_budget(max_length: int, batch_size: int) -> None:
    from gptloss_cli.core.batches import CPU_TOKEN_BUDGET, batches
    from gptloss_cli.core.plan import Plan

    windows = [w for d, n in enumerate([50_000, 3, 700]) for w in plan_windows(d, n, max_length, max_length, True)]
    windows.sort(key=lambda w: w.end - w.start, reverse=True)
    plan = Plan(max_length, max_length, "auto", 1, batch_size)
    got = list(batches(windows, plan, torch.device("cpu")))
    assert [w for b in got for w in b] == windows  # all, once, in order
    for batch in got:
        assert len(batch) <= batch_size
        padded = len(batch) * max(w.end - w.start for w in batch)
        assert padded <= CPU_TOKEN_BUDGET or len(batch) == 1
    assert len(got[0]) == min(batch_size, max(1, CPU_TOKEN_BUDGET // (max_length - 1)))  # full-length windows


def test_batches_of_many_lengths_stay_mostly_real_tokens() -> None:
    """Documents of 1..200 tokens, longest first, in batches of up to 64: at most 25% padding each."""
    from gptloss_cli.core.batches import MAX_PADDING, batches
    from gptloss_cli.core.plan import Plan

    rng = np.random.default_rng(0)
    windows = [w for d, n in enumerate(rng.integers(1, 200, size=300)) for w in plan_windows(d, int(n), 256, 256, True)]
    windows.sort(key=lambda w: w.end - w.start, reverse=True)
    got = list(batches(windows, Plan(256, 256, "auto", 1, 64), torch.device("cpu")))
    assert [w for b in got for w in b] == windows
    for batch in got:
        lengths = [w.end - w.start for w in batch]
        assert sum(lengths) >= (1 - MAX_PADDING) * len(batch) * max(lengths)
    assert len(got) < len(windows) / 8  # still batches, not one document at a time
