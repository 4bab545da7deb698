"""The peers' protocols: which windows each one runs, what context a scored token gets, which tokens count.

Each preset reproduces how another tool scores a document, so that its number comes out here too:

    gptloss     BOS starts every window; windows of L advance by the stride; every token scored once
    lm-eval     lm-evaluation-harness loglikelihood_rolling: [prefix] + T[0:L-1] scores T[0:L], then each
                block of up to L tokens ending at e is scored from T[e-L-1:e-1] (one token of overlap)
    llama.cpp   llama-perplexity: chunks [iL, (i+1)L) of the stream (tail dropped), the chunk's first token
                replaced by BOS, only the second half scored (L/2 + 1 ... L - 1 of the chunk)
    hf-stride   the transformers documentation's strided recipe: windows [b, b+L) for b = 0, s, 2s, ...,
                each scoring the tokens after the previous window's end
    gptq        GPTQ/AWQ wikitext: disjoint chunks of L (tail dropped), no BOS, L - 1 tokens scored each

Worked example, 7 tokens x0..x6, L = 4 (P = the lm-eval prefix token)::

    lm-eval     [P x0 x1 x2] scores x0 x1 x2 x3;  [x2 x3 x4 x5] scores x4 x5 x6 (x3 is context)
    gptq        [x0 x1 x2 x3] scores x1 x2 x3; x4..x6 dropped (not a whole chunk)
    hf-stride   (stride 2) [x0 x1 x2 x3] scores x1 x2 x3; [x2 x3 x4 x5] scores x4 x5; [x4 x5 x6] scores x6
"""

from __future__ import annotations

import math
from dataclasses import replace
from enum import Enum

import numpy as np

from ..errors import UsageError
from .windows import Window, plan_windows


class Protocol(str, Enum):
    gptloss = "gptloss"
    lm_eval = "lm-eval"
    llama_cpp = "llama.cpp"
    hf_stride = "hf-stride"
    gptq = "gptq"


# Window length when --max-length is not given (None: the model's context, capped as for gptloss).
DEFAULT_LENGTH = {Protocol.llama_cpp: 512, Protocol.gptq: 2048}
# Presets whose windows advance by a rule of their own: --stride contradicts them.
FIXED_STRIDE = (Protocol.lm_eval, Protocol.llama_cpp, Protocol.gptq)


def lm_eval_windows(doc: int, n: int, length: int, prefix: int | None) -> list[Window]:
    """lm-evaluation-harness's rolling windows with one token of context (get_rolling_token_windows,
    make_disjoint_window): the input is L tokens, the last scored token is not part of it."""
    if n == 0:
        return []
    first = min(length, n)
    windows = [Window(doc, 0, first, 0, prefix, trim=True)]
    done = first
    while done < n:
        end = min(n, done + length)
        windows.append(Window(doc, end - 1 - length, end, done, None, trim=True))
        done = end
    return windows


def llama_cpp_windows(doc: int, n: int, length: int, bos: int | None) -> list[Window]:
    """llama-perplexity's chunks: the tail that does not fill a chunk is dropped; with a BOS token the chunk's
    first token is replaced by it; the first half is context only."""
    if length < 4 or length % 2:
        raise UsageError(f"--max-length {length}: llama.cpp's protocol needs an even n_ctx of at least 4")
    first = length // 2
    windows = []
    for i in range(n // length):
        start = i * length
        if bos is None:
            windows.append(Window(doc, start, start + length, start + first + 1))
        else:
            windows.append(Window(doc, start + 1, start + length, start + first + 1, bos))
    return windows


def hf_stride_windows(doc: int, n: int, length: int, stride: int) -> list[Window]:
    """The documentation recipe: windows [begin, begin + L) for begin = 0, stride, ...; each scores the
    tokens after the previous window's end (the very first token has no context and is not scored)."""
    windows, previous = [], 0
    for begin in range(0, n, stride):
        end = min(begin + length, n)
        start_scoring = max(previous, begin + 1)
        if start_scoring < end:
            windows.append(Window(doc, begin, end, start_scoring))
        previous = end
        if end == n:
            break
    return windows


def gptq_windows(doc: int, n: int, length: int) -> list[Window]:
    """Disjoint chunks of L with no BOS, the tail dropped; each chunk's first token is context only."""
    return [Window(doc, i * length, (i + 1) * length, i * length + 1) for i in range(n // length)]


def gptloss_windows(doc: int, n: int, length: int, stride: int, bos: int | None) -> list[Window]:
    """BOS at every window start (when there is one); every token scored once (windows.plan_windows)."""
    return [replace(w, prefix=bos) for w in plan_windows(doc, n, length, stride, bos is not None)]


def document_windows(
    protocol: Protocol, doc: int, n: int, length: int, stride: int, bos: int | None, prefix: int | None
) -> list[Window]:
    """The windows `protocol` runs over an n-token document (bos: the BOS id, when the tokenizer has one
    and the policy uses it; prefix: lm-eval's first-window token)."""
    if protocol is Protocol.lm_eval:
        return lm_eval_windows(doc, n, length, prefix)
    if protocol is Protocol.llama_cpp:
        return llama_cpp_windows(doc, n, length, bos)
    if protocol is Protocol.hf_stride:
        return hf_stride_windows(doc, n, length, stride)
    if protocol is Protocol.gptq:
        return gptq_windows(doc, n, length)
    return gptloss_windows(doc, n, length, stride, bos)


def recipe_sums(windows: list[Window], positions: np.ndarray, nll: np.ndarray) -> tuple[float, int]:
    """What the transformers recipe adds up over one document: per window, the mean NLL of the tokens it
    scores times the recipe's count, its label count less one (trg_len - 1: one too few for every window
    after the first when the stride is below the window, transformers #34138). Returns (Σ mean·count, Σ count)."""
    total, weight, previous = [], 0, 0
    for w in windows:
        inside = (positions >= w.score_start) & (positions < w.end)  # (k,)
        count = (w.end - previous) - 1
        if inside.any():
            total.append(math.fsum(nll[inside].tolist()) / int(inside.sum()) * count)
        weight += count
        previous = w.end
    return math.fsum(total), weight
