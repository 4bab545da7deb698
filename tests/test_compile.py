"""torch.compile: the fused LM-head step (accelerators) and --compile (the body), against the eager numbers."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_totals_close, run

from gptloss_cli.core import fused
from gptloss_cli.core.fused import CompiledStep, compiled_step, nll_step
from gptloss_cli.core.lmhead import LinearHead
from gptloss_cli.core.loss import head_nll

RTOL = 1e-5  # float32 sums in another order (block sizes, fused kernels); the NLLs here are O(1)-O(10)


def direct_nll(head: LinearHead, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the whole logits at once (bias and soft cap applied by hand)."""
    logits = (features @ head.weight.T).float()
    if head.bias is not None:
        logits = logits + head.bias.float()
    if head.softcap:
        logits = torch.tanh(logits / head.softcap) * head.softcap
    return torch.nn.functional.cross_entropy(logits, targets, reduction="none")


CASES = [(torch.float32, False, None), (torch.bfloat16, True, 30.0), (torch.float32, True, 5.0)]


@pytest.mark.parametrize(("dtype", "bias", "softcap"), CASES)
def test_compiled_step_matches_the_whole_softmax(dtype: torch.dtype, bias: bool, softcap: float | None) -> None:
    gen = torch.Generator().manual_seed(0)
    vocab, dim, m = 3001, 48, 301  # neither divisible by the blocks below: ragged last blocks of rows and entries
    head = LinearHead(
        torch.randn(vocab, dim, generator=gen).to(dtype),
        torch.randn(vocab, generator=gen).to(dtype) if bias else None,
        softcap,
    )
    features = (torch.randn(m, dim, generator=gen) * 0.7).to(dtype)
    targets = torch.randint(0, vocab, (m,), generator=gen)
    targets[:3] = torch.tensor([0, vocab - 1, 1024])  # the first and last entries, and a block's first
    expected = direct_nll(head, features, targets)
    for each in (CompiledStep(), nll_step):
        got = head_nll(features, targets, head, rows=128, vocab_block=1024, step=each)
        torch.testing.assert_close(got, expected, rtol=RTOL, atol=1e-5)


def test_the_compiled_step_is_for_compiled_models_on_accelerators() -> None:
    assert compiled_step("cpu", compiled=True) is None  # the eager fold is as fast there
    assert compiled_step("cuda", compiled=False) is None
    assert compiled_step("cuda:0", compiled=True) is compiled_step("cuda", compiled=True)  # made lazily, once


def broken_compile(fn):
    def call(*args):
        raise RuntimeError("no compiler here")

    return call


FALLBACK = "gptloss: torch.compile unavailable (RuntimeError); LM head runs eagerly"


def test_a_failed_compile_falls_back_to_the_eager_step(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(fused.torch, "compile", broken_compile)
    step = CompiledStep()
    head = LinearHead(torch.randn(50, 8), None, None)
    features, targets = torch.randn(7, 8), torch.randint(0, 50, (7,))
    got = head_nll(features, targets, head, rows=4, vocab_block=16, step=step)
    torch.testing.assert_close(got, direct_nll(head, features, targets), rtol=RTOL, atol=1e-5)
    assert step.fallback == FALLBACK and step.compiled is None
    assert capsys.readouterr().err == ""  # the library prints nothing: the caller tells


def test_the_cli_tells_why_the_head_runs_eagerly(monkeypatch: pytest.MonkeyPatch, model_dirs, tmp_path) -> None:
    """The process's compiled step fell back (as on a GPU without a compiler backend): the command says so on
    stderr once, after its work, in the words the step gave."""
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on the mat.", encoding="utf-8")
    monkeypatch.setattr(fused.torch, "compile", broken_compile)
    fused._the_step.cache_clear()
    try:
        step = compiled_step("cuda", compiled=True)  # the process's step, run here on CPU tensors
        assert step is not None and fused.compile_fallback() is None
        head = LinearHead(torch.randn(50, 8), None, None)
        head_nll(torch.randn(3, 8), torch.randint(0, 50, (3,)), head, step=step)
        first, second = run("score", text, "-m", model_dirs["llama"]), run("score", text, "-m", model_dirs["llama"])
    finally:
        fused._the_step.cache_clear()
    assert first.exit_code == 0 and second.exit_code == 0, first.stderr
    assert FALLBACK in first.stderr.splitlines() and FALLBACK not in second.stderr


def test_compile_option_keeps_the_numbers(model_dirs, tmp_path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on the mat, and then the dog sat on the log. " * 8, encoding="utf-8")
    common = ("score", text, "-m", model_dirs["llama"], "--max-length", 32, "--batch-size", 3, "-f", "json")
    plain, compiled = run(*common), run(*common, "--compile")
    assert plain.exit_code == 0 and compiled.exit_code == 0, compiled.stderr
    a, b = json.loads(plain.stdout), json.loads(compiled.stdout)
    assert "compiled" not in a["model"] and b["model"]["compiled"] is True
    assert_totals_close(b["total"], a["total"])
