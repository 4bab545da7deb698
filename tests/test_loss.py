"""The loss kernel against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from gptloss_cli.core.lmhead import LinearHead
from gptloss_cli.core.loss import head_nll, head_stats, logits_nll, nll_from_logits


def test_matches_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(37, 101) * 5  # (M, V)
    targets = torch.randint(0, 101, (37,))
    expected = torch.nn.functional.cross_entropy(logits.double(), targets, reduction="none")
    assert torch.allclose(nll_from_logits(logits, targets).double(), expected, rtol=1e-6, atol=1e-6)


def test_hand_computed_softmax() -> None:
    # softmax([1, 2, 3]) = [0.0900, 0.2447, 0.6652]; -log p[2] = log(e + e^2 + e^3) - 3
    expected = math.log(math.e + math.e**2 + math.e**3) - 3
    got = nll_from_logits(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2]))
    assert abs(got.item() - expected) < 1e-6


def test_zero_logits_give_log_vocab() -> None:
    vocab = 262_144
    got = nll_from_logits(torch.zeros(3, vocab), torch.tensor([0, 5, vocab - 1]))
    assert torch.all((got.double() - math.log(vocab)).abs() < 1e-6)


def test_large_logits_stay_finite() -> None:
    small = torch.tensor([[1.0, 2.0, 3.0]])
    got = nll_from_logits(small + 1000.0, torch.tensor([0]))
    assert torch.isfinite(got).all()
    assert abs(got.item() - nll_from_logits(small, torch.tensor([0])).item()) < 1e-4


def test_bfloat16_logits_are_reduced_in_float32() -> None:
    torch.manual_seed(1)
    logits = (torch.randn(8, 5000) * 3).bfloat16()
    targets = torch.randint(0, 5000, (8,))
    expected = torch.nn.functional.cross_entropy(logits.double(), targets, reduction="none")
    got = nll_from_logits(logits, targets)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("bias", [False, True])
def test_blocked_head_equals_full_logits(softcap: float | None, bias: bool) -> None:
    """Blocking over rows and vocabulary (online log-sum-exp) gives the full-softmax NLL."""
    torch.manual_seed(2)
    weight = torch.randn(50, 16)  # (V, D)
    head = LinearHead(weight, torch.randn(50) if bias else None, softcap)
    feats, targets = torch.randn(23, 16) * 3, torch.randint(0, 50, (23,))
    logits = feats.double() @ weight.double().T + (head.bias.double() if bias else 0)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    expected = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    for rows in (1, 4, 23, 100):
        for block in (1, 7, 16, 50, 64):
            got = head_nll(feats, targets, head, rows=rows, vocab_block=block)
            assert got.dtype == torch.float32
            assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-5), (rows, block)


def test_blocked_head_zero_weights_give_exactly_log_vocab() -> None:
    vocab = 262_144
    head = LinearHead(torch.zeros(vocab, 8), None, None)
    got = head_nll(torch.randn(5, 8), torch.tensor([0, 1, 2047, 2048, vocab - 1]), head)
    assert torch.all((got.double() - math.log(vocab)).abs() < 1e-6)


def test_logits_nll_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import gptloss_cli.core.lmhead as lmhead

    monkeypatch.setattr(lmhead, "LOGITS_CHUNK_BYTES", 4 * 40 * 3)  # 3 rows of 40 logits per chunk
    torch.manual_seed(3)
    logits, targets = torch.randn(10, 40).bfloat16(), torch.randint(0, 40, (10,))
    assert torch.equal(logits_nll(logits, targets), nll_from_logits(logits, targets))


def test_rank_counts_strictly_higher_logits_in_bfloat16() -> None:
    """In bf16 many logits share a value: the target's ties are not counted above it, in any block layout."""
    torch.manual_seed(0)
    vocab, dim, m = 4096, 64, 64
    head = LinearHead(torch.randn(vocab, dim).bfloat16(), None, None)
    features = torch.randn(m, dim).bfloat16()
    targets = torch.randint(0, vocab, (m,))
    full = head.logits(features)  # (m, V) float32 of bf16 values
    expected = 1 + (full > full.gather(1, targets.unsqueeze(1))).sum(dim=1)
    assert int((full == full.gather(1, targets.unsqueeze(1))).sum()) > m  # ties exist
    for rows, block in [(64, 4096), (7, 512), (64, 300)]:
        stats = head_stats(features, targets, head, 3, rows=rows, vocab_block=block)
        assert torch.equal(stats.rank, expected)
