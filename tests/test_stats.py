"""Aggregates against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import TOTAL_KEYS

from gptloss_cli.core.totals import Totals, scored_text_extent
from gptloss_cli.core.windows import TokenizedDocument
from gptloss_cli.inputs.document import Document


def test_totals_formulas() -> None:
    nll = np.array([1.0, 2.0, 3.0, 6.0])
    t = Totals.from_nll(nll, n_bytes=20, n_words=3)
    assert t.tokens_scored == 4 and t.nll_sum == 12.0
    assert t.mean_nll == 3.0
    assert math.isclose(t.perplexity or 0, math.exp(3.0))
    assert math.isclose(t.bits_per_token or 0, 3.0 / math.log(2))
    assert math.isclose(t.bits_per_byte or 0, 12.0 / (20 * math.log(2)))
    assert math.isclose(t.word_perplexity or 0, math.exp(12.0 / 3))
    se = np.std(nll, ddof=1) / 2
    assert math.isclose(t.stderr_mean_nll or 0, se)
    low, high = t.perplexity_ci95 or (0, 0)
    assert math.isclose(low, math.exp(3 - 1.959963984540054 * se))
    assert math.isclose(high, math.exp(3 + 1.959963984540054 * se))


def test_empty_and_single() -> None:
    empty = Totals.from_nll(np.zeros(0), 0, 0)
    assert empty.perplexity is None and empty.bits_per_byte is None and empty.perplexity_ci95 is None
    one = Totals.from_nll(np.array([2.0]), 1, 1)
    assert one.stderr_mean_nll is None and one.perplexity_ci95 is None
    assert set(one.to_dict()) == TOTAL_KEYS


def doc_with_ends(text: str, ends: list[int]) -> TokenizedDocument:
    starts = [0, *ends[:-1]]
    return TokenizedDocument(Document(text, "t"), np.arange(len(ends)), np.array(starts), np.array(ends))


@pytest.mark.parametrize("text", ["héllo wörld 👋🏽 日本語", "a  b\n", "   lead", "x"])
def test_fully_scored_text_counts_every_byte_and_word(text: str) -> None:
    # one token per character: the simplest tokenization with offsets
    doc = doc_with_ends(text, list(range(1, len(text) + 1)))
    n_bytes, n_words = scored_text_extent(doc, np.arange(len(text)))
    assert n_bytes == len(text.encode("utf-8"))
    assert n_words == len(text.split())


def test_unscored_first_token_is_left_out() -> None:
    text = "Hello big world"
    doc = doc_with_ends(text, [5, 9, 15])  # "Hello", " big", " world"
    assert scored_text_extent(doc, np.array([1, 2])) == (len(" big world"), 2)
    assert scored_text_extent(doc, np.array([2])) == (len(" world"), 1)


def test_tokens_missing_from_offsets_still_own_whitespace() -> None:
    text = "ab  cd  "
    doc = doc_with_ends(text, [2, 6])  # trailing spaces covered by no token: the last token owns them
    assert scored_text_extent(doc, np.array([0, 1])) == (8, 2)
