"""Protocol presets: how each peer scores a document, so that its number comes out here too. One class per
preset owns all of it: its windows, its defaults and refusals, its softmax rule, the text of its card, and its
peer's own figures with the additive counts they are rebuilt from. The registry at the end is the only place
that lists them; adding a preset is one class and one `register` line (tests/test_presets.py adds one).

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
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Protocol

import numpy as np

from ..errors import GptlossError, UsageError
from ..models.tokenizer import Tokenizer
from .totals import LN2, Totals, exp_or_none
from .windows import Window, plan_windows

DEFAULT_CONTEXT_CAP = 2048  # window length when neither --max-length nor the preset gives one


class Number(Protocol):
    """Formats a number to so many significant digits (render.format.num)."""

    def __call__(self, value: float | None, digits: int) -> str: ...


@dataclass(frozen=True)
class Layout:
    """What a preset's windows are cut from: the window length and stride, the token a window starts with
    (bos) and the token before a document's first window (prefix), as the plan resolved them."""

    length: int
    stride: int
    bos: int | None = None
    prefix: int | None = None


@dataclass(frozen=True)
class PeerCounts:
    """What a peer's figures divide by besides the totals; each adds over documents (and so over shards)."""

    windows: int = 0  # chunks run (llama.cpp, gptq)
    words: int = 0  # lm-eval: words of the whole texts, as its wikitext task counts them
    bytes: int = 0  # lm-eval: UTF-8 bytes of the whole texts
    recipe: tuple[float, int] | None = None  # hf-stride: (Σ window mean x count, Σ count)

    @classmethod
    def combine(cls, parts: Sequence[PeerCounts]) -> PeerCounts:
        """The counts of several parts; the recipe's sum exactly rounded, so their order does not matter."""
        recipes = [p.recipe for p in parts if p.recipe is not None]
        recipe = (math.fsum(r[0] for r in recipes), sum(r[1] for r in recipes)) if recipes else None
        return cls(sum(p.windows for p in parts), sum(p.words for p in parts), sum(p.bytes for p in parts), recipe)

    def structure(self) -> PeerCounts:
        """The counts that follow from the documents and windows alone (the recipe's need the losses)."""
        return replace(self, recipe=None)


@dataclass(frozen=True)
class PeerFigures:
    """A peer's own figures for a total, typed until `to_dict` puts them under the peer's key."""

    key: ClassVar[str]  # where the figures go in a total ({"lm_eval": {...}})

    def to_dict(self) -> dict[str, Any]:
        return {self.key: {f.name: getattr(self, f.name) for f in fields(self)}}

    def prints(self, num: Number) -> str:
        """What the peer itself would print (`num` formats a number to so many digits)."""
        raise NotImplementedError


@dataclass(frozen=True)
class LmEvalFigures(PeerFigures):
    key: ClassVar[str] = "lm_eval"
    log_likelihood: float
    words: int
    bytes: int
    word_perplexity: float | None
    byte_perplexity: float | None
    bits_per_byte: float | None

    def prints(self, num: Number) -> str:
        return f"word PPL {num(self.word_perplexity, 2)}"


@dataclass(frozen=True)
class LlamaCppFigures(PeerFigures):
    key: ClassVar[str] = "llama_cpp"
    perplexity: float | None
    plus_minus: float | None
    chunks: int

    def prints(self, num: Number) -> str:
        return f"{num(self.perplexity, 4)} ± {num(self.plus_minus, 4)}"


@dataclass(frozen=True)
class HfStrideFigures(PeerFigures):
    key: ClassVar[str] = "hf_stride"
    perplexity: float | None
    tokens: int
    corrected_perplexity: float | None
    corrected_tokens: int

    def prints(self, num: Number) -> str:
        return f"{num(self.perplexity, 3)} ({self.tokens} tok)"


@dataclass(frozen=True)
class GptqFigures(PeerFigures):
    key: ClassVar[str] = "gptq"
    perplexity: float | None
    chunks: int

    def prints(self, num: Number) -> str:
        return num(self.perplexity, 3)


class Preset:
    """A protocol: the class attributes are its settings and the text of its card, the methods what it does.
    The defaults are gptloss's own windows (core.windows.plan_windows); a preset changes what differs."""

    name: ClassVar[str]  # as --protocol takes it
    peer_key: ClassVar[str | None] = None  # the key of the peer's own figures in a total ({"lm_eval": {...}})
    special_tokens: ClassVar[bool] = False  # tokenise with the tokenizer's defaults (its special tokens)
    peer_softmax: ClassVar[bool] = False  # torch's float32 log-softmax over the vocabulary, as the peer does
    takes_bos: ClassVar[bool] = True  # --bos applies (the others fix where BOS goes)
    takes_stride: ClassVar[bool] = True  # --stride applies (the others advance by a rule of their own)
    takes_masks: ClassVar[bool] = True  # loss masks apply (the peers score whole texts)
    length_cap: ClassVar[int] = DEFAULT_CONTEXT_CAP  # the default window: the model's context, at most this
    # The card: how the text is tokenised, where BOS goes, how the total adds up, and why the number differs.
    tokenization: ClassVar[str]
    bos_rule: ClassVar[str]
    aggregation: ClassVar[str]
    divisor: ClassVar[str] = "tokens"
    why: ClassVar[str]
    summary: ClassVar[str]  # --protocol's help: which tool, or what it does
    length_note: ClassVar[str | None] = None  # --max-length's help: the default window, where it is the preset's

    def __repr__(self) -> str:
        return f"<preset {self.name}>"

    def default_length(self, context: int | None) -> int:
        """The window length when --max-length is not given, for a model of `context` tokens (None: unknown)."""
        return min(context or DEFAULT_CONTEXT_CAP, self.length_cap)

    def starts(self, tokenizer: Tokenizer, bos: int | None) -> tuple[int | None, int | None]:
        """(the token each window starts with, the token before a document's first window), given the BOS
        id that --bos resolved to."""
        return bos, None

    def windows(self, doc: int, n: int, layout: Layout) -> list[Window]:
        """The windows this preset runs over document `doc` of n tokens."""
        planned = plan_windows(doc, n, layout.length, layout.stride, layout.bos is not None)
        return [replace(w, prefix=layout.bos) for w in planned]

    def check(self, source: str, n: int, layout: Layout) -> None:
        """Refuse, in one line, a document this preset cannot score as its peer does."""

    def shown_stride(self, layout: Layout) -> int | None:
        """The stride the card reports (None where the windows do not advance by one)."""
        return layout.stride if self.takes_stride else None

    def bos_line(self, bos: int | None, prefix: int | None) -> str:
        """Where BOS goes, for the card's one-line form."""
        added = bos if bos is not None else prefix
        return self.bos_rule + ("" if added is None else f" (id {added})")

    def counts(self, text: str, windows: Sequence[Window], positions: np.ndarray, nll: np.ndarray) -> PeerCounts:
        """One document's additive counts behind the peer's figures (its windows, its scored tokens' NLL)."""
        return PeerCounts()

    def counts_from_total(self, total: dict[str, Any]) -> PeerCounts:
        """The counts read back from a total's peer block, less those the documents' lines keep."""
        return PeerCounts()

    def peer_numbers(self, total: Totals, counts: PeerCounts) -> PeerFigures | None:
        """The peer's own figures for a total; None when there is no peer."""
        return None


class Gptloss(Preset):
    name = "gptloss"
    tokenization = "no special tokens (each window adds BOS)"
    bos_rule = "BOS starts every window"
    aggregation = "micro average over scored tokens"
    why = "every token once, BOS first in every window, up to max-length - 1 tokens of context"
    summary = "BOS in every window, every token once"

    def bos_line(self, bos: int | None, prefix: int | None) -> str:
        return "no BOS token" if bos is None else f"{self.bos_rule} (id {bos})"


class LmEval(Preset):
    name = "lm-eval"
    peer_key = "lm_eval"
    special_tokens = peer_softmax = True
    takes_bos = takes_stride = takes_masks = False
    tokenization = "the tokenizer's defaults (its special tokens), as lm-eval's tok_encode"
    bos_rule = "BOS (else EOS) before the first window only"
    aggregation = "sum of log-likelihoods over tokens, words and bytes (total.lm_eval)"
    divisor = "tokens, words and bytes"
    why = "each block after the first starts with one token of context: higher PPL on long texts"
    summary = "lm-evaluation-harness, rolling windows"
    length_note = "the whole context"

    def default_length(self, context: int | None) -> int:
        return context or DEFAULT_CONTEXT_CAP  # lm-eval's max_length: the model's whole context

    def starts(self, tokenizer: Tokenizer, bos: int | None) -> tuple[int | None, int | None]:
        prefix = bos if bos is not None else tokenizer.eos_token_id
        if prefix is None:
            raise GptlossError("the lm-eval protocol starts a document with BOS, else EOS: this tokenizer has neither")
        return None, prefix

    def windows(self, doc: int, n: int, layout: Layout) -> list[Window]:
        """lm-evaluation-harness's rolling windows with one token of context (get_rolling_token_windows,
        make_disjoint_window): the input is L tokens, the last scored token is not part of it."""
        if n == 0:
            return []
        length = layout.length
        first = min(length, n)
        windows = [Window(doc, 0, first, 0, layout.prefix, trim=True)]
        done = first
        while done < n:
            end = min(n, done + length)
            windows.append(Window(doc, end - 1 - length, end, done, None, trim=True))
            done = end
        return windows

    def counts(self, text: str, windows: Sequence[Window], positions: np.ndarray, nll: np.ndarray) -> PeerCounts:
        return PeerCounts(words=len(re.split(r"\s+", text)), bytes=len(text.encode("utf-8")))

    def counts_from_total(self, total: dict[str, Any]) -> PeerCounts:
        block = total[self.peer_key]
        return PeerCounts(words=int(block["words"]), bytes=int(block["bytes"]))

    def peer_numbers(self, total: Totals, counts: PeerCounts) -> PeerFigures | None:
        ll, words, n_bytes = -total.nll_sum, counts.words, counts.bytes
        return LmEvalFigures(
            log_likelihood=ll,
            words=words,
            bytes=n_bytes,
            word_perplexity=exp_or_none(-ll / words) if words else None,
            byte_perplexity=exp_or_none(-ll / n_bytes) if n_bytes else None,
            bits_per_byte=-ll / (n_bytes * LN2) if n_bytes else None,
        )


class Chunks(Preset):
    """Presets that cut the stream into disjoint chunks of L and drop the tail (llama.cpp, gptq)."""

    special_tokens = True
    takes_bos = takes_stride = takes_masks = False

    def counts(self, text: str, windows: Sequence[Window], positions: np.ndarray, nll: np.ndarray) -> PeerCounts:
        return PeerCounts(windows=len(windows))

    def counts_from_total(self, total: dict[str, Any]) -> PeerCounts:
        return PeerCounts(windows=int(total[self.peer_key or ""]["chunks"]))


class LlamaCpp(Chunks):
    name = "llama.cpp"
    peer_key = "llama_cpp"
    length_cap = 512
    tokenization = "one stream per document, the tokenizer's defaults (BOS first when it adds one)"
    bos_rule = "BOS replaces each chunk's first token (when the tokenizer adds BOS)"
    aggregation = "micro average over scored tokens; ± as llama-perplexity (total.llama_cpp)"
    why = "only each chunk's second half is scored (at least n_ctx/2 of context): lower PPL"
    summary = "llama-perplexity"
    length_note = "512"

    def starts(self, tokenizer: Tokenizer, bos: int | None) -> tuple[int | None, int | None]:
        return (bos if tokenizer.adds_bos else None), None  # llama.cpp puts BOS in when the tokenizer adds it

    def windows(self, doc: int, n: int, layout: Layout) -> list[Window]:
        """llama-perplexity's chunks: the tail that does not fill a chunk is dropped; with a BOS token the
        chunk's first token is replaced by it; the first half is context only."""
        length, bos = layout.length, layout.bos
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

    def check(self, source: str, n: int, layout: Layout) -> None:
        if n < 2 * layout.length:
            raise GptlossError(
                f"{source}: {n} tokens; the llama.cpp protocol needs at least 2 x n_ctx = "
                f"{2 * layout.length} (as llama-perplexity does): give a smaller --max-length"
            )

    def peer_numbers(self, total: Totals, counts: PeerCounts) -> PeerFigures | None:
        ppl, spread = total.perplexity, total.stderr_mean_nll
        plus_minus = None if ppl is None or spread is None else ppl * spread
        return LlamaCppFigures(perplexity=ppl, plus_minus=plus_minus, chunks=counts.windows)


class HfStride(Preset):
    name = "hf-stride"
    peer_key = "hf_stride"
    special_tokens = peer_softmax = True
    takes_bos = takes_masks = False
    tokenization = "the tokenizer's defaults (its special tokens)"
    bos_rule = "none added"
    aggregation = "window means weighted by the recipe's count (total.hf_stride); ours beside it"
    why = "no BOS, the first token unscored; its count is one short per overlapping window"
    summary = "the transformers docs' strided recipe"

    def starts(self, tokenizer: Tokenizer, bos: int | None) -> tuple[int | None, int | None]:
        return None, None

    def windows(self, doc: int, n: int, layout: Layout) -> list[Window]:
        """The documentation recipe: windows [begin, begin + L) for begin = 0, stride, ...; each scores the
        tokens after the previous window's end (the very first token has no context and is not scored)."""
        windows, previous = [], 0
        for begin in range(0, n, layout.stride):
            end = min(begin + layout.length, n)
            start_scoring = max(previous, begin + 1)
            if start_scoring < end:
                windows.append(Window(doc, begin, end, start_scoring))
            previous = end
            if end == n:
                break
        return windows

    def counts(self, text: str, windows: Sequence[Window], positions: np.ndarray, nll: np.ndarray) -> PeerCounts:
        """What the transformers recipe adds up over one document: per window, the mean NLL of the tokens it
        scores times the recipe's count, its label count less one (trg_len - 1: one too few for every window
        after the first when the stride is below the window, transformers #34138): (Σ mean·count, Σ count)."""
        total, weight, previous = [], 0, 0
        for w in windows:
            inside = (positions >= w.score_start) & (positions < w.end)  # (k,)
            count = (w.end - previous) - 1
            if inside.any():
                total.append(math.fsum(nll[inside].tolist()) / int(inside.sum()) * count)
            weight += count
            previous = w.end
        return PeerCounts(recipe=(math.fsum(total), weight))

    def peer_numbers(self, total: Totals, counts: PeerCounts) -> PeerFigures | None:
        if counts.recipe is None:
            return None
        weighted, count = counts.recipe
        return HfStrideFigures(
            perplexity=exp_or_none(weighted / count) if count else None,
            tokens=count,
            corrected_perplexity=total.perplexity,
            corrected_tokens=total.tokens_scored,
        )


class Gptq(Chunks):
    name = "gptq"
    peer_key = "gptq"
    peer_softmax = True
    tokenization = "the tokenizer's defaults (its special tokens)"
    bos_rule = "none added"
    aggregation = "mean of per-chunk means (chunks of equal size: the micro average)"
    why = "no BOS; each chunk restarts without context and the tail is dropped"
    summary = "GPTQ/AWQ wikitext chunks"

    def starts(self, tokenizer: Tokenizer, bos: int | None) -> tuple[int | None, int | None]:
        return None, None

    def windows(self, doc: int, n: int, layout: Layout) -> list[Window]:
        """Disjoint chunks of L with no BOS, the tail dropped; each chunk's first token is context only."""
        length = layout.length
        return [Window(doc, i * length, (i + 1) * length, i * length + 1) for i in range(n // length)]

    def peer_numbers(self, total: Totals, counts: PeerCounts) -> PeerFigures | None:
        return GptqFigures(perplexity=total.perplexity, chunks=counts.windows)


# The registry: --protocol NAME, in the order `--protocol all` runs them.
_PRESETS: dict[str, Preset] = {}
DEFAULT = "gptloss"


def register(preset: Preset) -> Preset:
    """Make `preset` available by its name (to --protocol, to run files that name it, to merge)."""
    if preset.name in _PRESETS or preset.name == "all":
        raise ValueError(f"a preset named {preset.name!r} is already registered")
    _PRESETS[preset.name] = preset
    return preset


def unregister(name: str) -> None:
    """Remove a preset (the built-in ones stay)."""
    if name in BUILT_IN:
        raise ValueError(f"{name} is built in")
    _PRESETS.pop(name, None)


def preset(name: str | Preset) -> Preset:
    """The preset called `name` (a preset is returned as it is); an unknown name is refused in one line."""
    if isinstance(name, Preset):
        return name
    try:
        return _PRESETS[name]
    except KeyError:
        raise UsageError(f"--protocol {name}: no such protocol (one of {', '.join(preset_names())})") from None


def presets() -> list[Preset]:
    """Every registered preset, in order."""
    return list(_PRESETS.values())


def preset_names() -> list[str]:
    return list(_PRESETS)


for _builtin in (Gptloss(), LmEval(), LlamaCpp(), HfStride(), Gptq()):
    register(_builtin)
BUILT_IN = frozenset(preset_names())
