"""The loss kernel against independent computations."""

from __future__ import annotations

import math

import torch

from gptloss_cli.loss import chunk_rows, chunked_nll, nll_from_logits


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


def test_chunked_equals_unchunked() -> None:
    torch.manual_seed(2)
    head = torch.nn.Linear(16, 50, bias=False)
    feats, targets = torch.randn(23, 16), torch.randint(0, 50, (23,))
    with torch.no_grad():
        whole = nll_from_logits(head(feats), targets)
        for rows in (1, 4, 7, 23, 100):
            assert torch.allclose(chunked_nll(feats, targets, head, rows), whole, rtol=1e-6, atol=1e-7)


def test_chunk_rows_bounds_memory() -> None:
    assert chunk_rows(262_144, 256 * 2**20) == 256
    assert chunk_rows(10**9, 1024) == 1
