"""Tokenize documents and plan the context windows the model sees.

A document's tokens x_0 .. x_{n-1} are scored in windows of at most `max_length`
model inputs. When the BOS policy prepends a marker token, every window starts
with it, so x_0 is predicted from the marker alone and no window starts with no
context at all. Windows advance by `stride` new tokens; each token is scored
exactly once, in the first window whose scored part holds it, and the overlap
with the previous window serves as context only.

Example, 7 tokens, max_length 4, stride 2, BOS prepended (capacity 3 per window)::

    window 0: <bos> x0 x1 x2        scores x0 x1 x2   (contexts 1, 2, 3)
    window 1: <bos> x2 x3 x4        scores x3 x4      (x2 is context)
    window 2: <bos> x4 x5 x6        scores x5 x6

Without a BOS token x_0 has nothing to be predicted from and is not scored, and
consecutive windows overlap by at least one token so that no other token is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from ..errors import GptlossError
from ..inputs.document import Document
from ..models.tokenizer import Tokenizer


class BosPolicy(str, Enum):
    """Whether each window starts with the tokenizer's BOS token."""

    auto = "auto"  # prepend it when the tokenizer has one
    always = "always"  # prepend it; an error when the tokenizer has none
    never = "never"  # never; the first token of a document is then not scored


@dataclass(frozen=True)
class TokenizedDocument:
    """A document with its token ids and each token's character span."""

    document: Document
    ids: np.ndarray  # (n,) int64
    starts: np.ndarray  # (n,) int64 character offsets
    ends: np.ndarray  # (n,) int64 character offsets, non-decreasing
    scored: np.ndarray | None = None  # (n,) bool loss mask from the document's spans; None: every token

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def owned_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends), (n,) each: the characters each token owns.

        Token i owns the text from the end of token i-1 to its own end, and the last token also owns
        any trailing text, so the spans tile the document: text a tokenizer leaves out of its offsets
        (whitespace, say) still belongs to a token. Where several tokens share one character (byte
        pieces of a character the vocabulary lacks), the first of them owns it; the others own "".
        """
        n_chars = len(self.document.text)
        ends = np.minimum(self.ends, n_chars)  # (n,)
        starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1]])[: len(ends)]  # (n,)
        ends = ends.copy()
        if len(ends):
            ends[-1] = n_chars
        return starts, ends

    def scored_positions(self, start: int, end: int) -> np.ndarray:
        """(k,) int64: the positions in [start, end) that the loss mask keeps."""
        positions = np.arange(start, end, dtype=np.int64)
        return positions if self.scored is None else positions[self.scored[start:end]]


@dataclass(frozen=True)
class Window:
    """Tokens [start, end) of document `doc`, scoring tokens [score_start, end).

    The model's input is `prefix` (a token id, when set) and then the tokens; with `trim` the last token is
    left out of the input, as its only role is to be predicted (lm-evaluation-harness's windows are cut so).
    """

    doc: int
    start: int
    end: int
    score_start: int
    prefix: int | None = None
    trim: bool = False


def resolve_bos(tokenizer: Tokenizer, policy: BosPolicy) -> int | None:
    """The token id each window starts with, or None."""
    if policy is BosPolicy.never:
        return None
    if tokenizer.bos_token_id is None and policy is BosPolicy.always:
        raise GptlossError("--bos always: this tokenizer has no BOS token")
    return tokenizer.bos_token_id


def tokenize(tokenizer: Tokenizer, document: Document, special: bool = False) -> TokenizedDocument:
    """Token ids and character offsets of a whole document, and the loss mask of its spans. No special
    tokens are added unless `special` (the tokenizer's defaults: Gemma's put BOS first, offsets (0, 0))."""
    ids, offsets = tokenizer.encode(document.text, special)  # (n,), (n, 2)
    ends = np.maximum.accumulate(offsets[:, 1]) if len(ids) else offsets[:, 1]  # (n,)
    tokens = TokenizedDocument(document=document, ids=ids, starts=offsets[:, 0], ends=ends)
    if document.spans is None:
        return tokens
    return replace(tokens, scored=span_mask(tokens, document.spans))


def span_mask(tokens: TokenizedDocument, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """(n,) bool: tokens with at least one character inside a span.

    A token's characters are the ones it owns (TokenizedDocument.owned_spans) and the ones its
    offsets name, so a token straddling a span's edge is in, and so is each byte piece of a
    character inside a span.
    """
    n_chars = len(tokens.document.text)
    inside = np.zeros(n_chars + 1, dtype=np.int64)  # (chars + 1,) +1 where a span opens, -1 where it closes
    for start, end in spans:
        if start < end:
            inside[start] += 1
            inside[end] -= 1
    count = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(np.cumsum(inside)[:-1] > 0)])  # (chars + 1,)
    own_starts, own_ends = tokens.owned_spans()  # (n,), (n,)
    raw_starts = np.minimum(tokens.starts, n_chars)  # (n,)
    raw_ends = np.clip(tokens.ends, raw_starts, n_chars)  # (n,)
    owned = count[own_ends] > count[own_starts]  # (n,) a masked-in character among those it owns
    named = count[raw_ends] > count[raw_starts]  # (n,) ... or among those its offsets name
    return owned | named


def plan_windows(doc: int, n_tokens: int, max_length: int, stride: int, has_bos: bool) -> list[Window]:
    """Windows that score every scorable token of an `n_tokens` document exactly once."""
    capacity = max_length - 1 if has_bos else max_length
    first = 0 if has_bos else 1
    step = min(stride, capacity - first)
    if step < 1:
        raise GptlossError(f"--max-length {max_length} is too short to score anything")
    if n_tokens <= first:
        return []
    end = min(n_tokens, capacity)
    windows = [Window(doc, 0, end, first)]
    while end < n_tokens:
        new_end = min(n_tokens, end + step)
        windows.append(Window(doc, max(0, new_end - capacity), new_end, end))
        end = new_end
    return windows


def window_inputs(tokens: TokenizedDocument, window: Window) -> list[int]:
    """The model's input ids for one window: its prefix token (if any), then the window's tokens."""
    prefix: Sequence[int] = () if window.prefix is None else (window.prefix,)
    return [*prefix, *tokens.ids[window.start : window.end - window.trim].tolist()]
