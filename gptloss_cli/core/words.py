"""Whitespace words and the tokens that make them up: per-word sums of per-token NLL.

A token belongs to the word holding the last non-space character it owns (see
TokenizedDocument.owned_spans); a token that owns only whitespace (a newline, say) belongs to the
next word, or to the last word at the end, so the words' NLL sums to the tokens'.
"""

from __future__ import annotations

import numpy as np

from .totals import WORD
from .windows import TokenizedDocument


def word_owner(tokens: TokenizedDocument) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The whitespace words of the text, and for each token the index of its word (-1: none).

    A token belongs to the word holding the last non-space character it owns. A token that owns
    only whitespace (a newline, say) belongs to the next word, or to the last word at the end. A
    zero-width token before all text (the BOS a tokenizer's defaults put first) belongs to none.
    """
    text = tokens.document.text
    words = [(m.start(), m.end()) for m in WORD.finditer(text)]
    starts, ends = tokens.owned_spans()  # (n,), (n,)
    if not words:
        return words, np.full(len(tokens), -1, dtype=np.int64)
    word_of_char = np.full(len(text), -1, dtype=np.int64)  # (chars,)
    for w, (s, e) in enumerate(words):
        word_of_char[s:e] = w
    in_word = word_of_char >= 0
    # last word-character index before position i, for i in 0..chars: (chars + 1,)
    idx = np.where(in_word, np.arange(len(text)), -1)
    last_before = np.concatenate([[-1], np.maximum.accumulate(idx)]) if len(text) else np.array([-1])
    word_starts = np.array([s for s, _ in words], dtype=np.int64)  # (words,)
    last_char = last_before[ends]  # (n,) last word character before each token's end
    # A token with an empty span shares the character before its end with the token that owns it.
    probe = np.where(ends > starts, starts, np.maximum(ends - 1, 0))  # (n,)
    owned = last_char >= probe
    following = np.minimum(np.searchsorted(word_starts, ends, side="left"), len(words) - 1)  # (n,)
    owner = np.where(owned, word_of_char[np.maximum(last_char, 0)], following)
    owner[(ends == starts) & (ends == 0)] = -1  # a zero-width token before all text (BOS): no word's
    return words, owner


def word_sums(
    tokens: TokenizedDocument, positions: np.ndarray, nll: np.ndarray
) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray, np.ndarray]:
    """The words (start, end), and per word: its tokens, its scored tokens, and their summed NLL."""
    words, owner = word_owner(tokens)
    count = np.bincount(owner[owner >= 0], minlength=len(words))  # (words,)
    scored_owner = owner[positions]  # (k,)
    keep = scored_owner >= 0
    scored = np.bincount(scored_owner[keep], minlength=len(words))  # (words,)
    total = np.bincount(scored_owner[keep], weights=nll[keep], minlength=len(words))  # (words,)
    return words, count, scored, total


def per_word(
    tokens: TokenizedDocument, positions: np.ndarray, nll: np.ndarray
) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """Words of the text, each word's summed NLL, and whether every one of its tokens was scored."""
    words, count, scored, total = word_sums(tokens, positions, nll)
    return words, total, (scored > 0) & (scored == count)
