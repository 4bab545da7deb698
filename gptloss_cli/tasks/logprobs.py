"""Prompt log-probabilities as an OpenAI-style completions endpoint gives them (`serve`'s /v1/completions):
each prompt token's log p given the tokens before it (the first token has none), its top-N alternatives,
and a few greedy tokens after the prompt.

The prompt is scored as given, in one window: no BOS is added (a text prompt is tokenized with the
tokenizer's own defaults, as vLLM does, so Gemma's BOS comes first and SmolLM2 gets none; a prompt of token
ids is taken exactly as it is, as evaluation harnesses send it with their own prefix token). A greedy token
is the top choice of the distribution after the last token: the prompt is scored with one placeholder token
after it, whose own log p is not used, so generation goes through the same engine as scoring (one pass per
generated token; a server caps max_tokens).

When the greedy choice is the end-of-sequence token, generation stops and that token is the last generated
one, with its log p and alternatives (finish_reason "stop"; the text leaves it out), as vLLM and OpenAI list
it: harnesses count on max_tokens generated tokens after an echoed prompt (lm-eval's local-completions sums
a continuation's log p over token_logprobs[ctxlen:-1], so a missing last token drops one of the prompt's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.engine import Progress
from ..core.plan import WindowSettings
from ..core.windows import BosPolicy, TokenizedDocument, tokenize
from ..errors import GptlossError
from ..inputs.document import Document
from ..models.spec import LoadedModel
from .job import Pretokenized
from .tokens import TokenRecord, TokenRun


@dataclass(frozen=True)
class Prompt:
    """A prompt's text and tokens, each token's character span in the text."""

    text: str
    ids: np.ndarray  # (n,) int64
    starts: np.ndarray  # (n,) int64
    ends: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def text_prompt(loaded: LoadedModel, text: str) -> Prompt:
    """A text prompt, tokenized with the tokenizer's defaults (its special tokens too, offsets (0, 0))."""
    tokens = tokenize(loaded.tokenizer, Document(text, "prompt"), special=True)
    return Prompt(text, tokens.ids, np.asarray(tokens.starts, dtype=np.int64), np.asarray(tokens.ends, dtype=np.int64))


def id_prompt(loaded: LoadedModel, ids: Sequence[int]) -> Prompt:
    """A prompt of token ids, exactly as given; its text is the tokens' texts one after another."""
    vocab = loaded.backend.vocab_size
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise GptlossError(f"token id {bad[0]} is not in this model's vocabulary (0 to {vocab - 1})")
    pieces = loaded.tokenizer.pieces(list(ids))
    ends = np.cumsum([len(p) for p in pieces], dtype=np.int64) if pieces else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([np.zeros(1, dtype=np.int64), ends[:-1]]) if pieces else ends
    return Prompt("".join(pieces), np.asarray(ids, dtype=np.int64), starts, ends)


@dataclass(frozen=True)
class Choice:
    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """One token of a completion: its text, where it starts in the completion's text, its log p given what
    came before (None for the first prompt token) and the top alternatives there (None likewise)."""

    token_id: int
    token: str
    offset: int
    logprob: float | None
    top: tuple[Choice, ...] | None


@dataclass(frozen=True)
class Completion:
    """A prompt's tokens with their log-probabilities, and the greedy tokens after it (ending with the
    end-of-sequence token when the model chose it: finish_reason "stop")."""

    prompt: Prompt
    prompt_tokens: list[TokenLogprob]
    generated: list[TokenLogprob]
    finish_reason: str  # "length", or "stop" at the end-of-sequence token

    @property
    def text_tokens(self) -> list[TokenLogprob]:
        """The generated tokens that make the text: all but a final end-of-sequence token."""
        return self.generated[:-1] if self.finish_reason == "stop" else self.generated

    @property
    def generated_text(self) -> str:
        return "".join(t.token for t in self.text_tokens)

    def to_dict(self) -> dict[str, Any]:
        def token(t: TokenLogprob) -> dict[str, Any]:
            top = (
                None
                if t.top is None
                else [{"token_id": c.token_id, "token": c.token, "logprob": c.logprob} for c in t.top]
            )
            return {"token_id": t.token_id, "token": t.token, "offset": t.offset, "logprob": t.logprob, "top": top}

        return {
            "prompt": [token(t) for t in self.prompt_tokens],
            "generated": [token(t) for t in self.generated],
            "finish_reason": self.finish_reason,
        }


class _PromptRun(Pretokenized, TokenRun):
    """A TokenRun over prompts already tokenized."""

    def __init__(self, loaded: LoadedModel, prompts: Sequence[TokenizedDocument], settings: WindowSettings, top: int):
        self.tokens = list(prompts)
        super().__init__(loaded, self.named(), settings, top_k=top)


def complete(
    loaded: LoadedModel,
    prompts: Sequence[Prompt],
    *,
    tops: Sequence[int],
    max_tokens: Sequence[int],
    batch_size: int = 8,
    progress: Progress | None = None,
) -> list[Completion]:
    """Each prompt's token log-probabilities with its `tops[i]` top alternatives, and `max_tokens[i]` greedy
    tokens after it (fewer when the model ends the sequence). Prompts are batched together; a prompt's numbers
    do not depend on the others (to float rounding: the batches' padding differs).

    Args:
        loaded: The model.
        prompts: From text_prompt or id_prompt; each must fit the model's context with its greedy tokens.
        tops: How many alternatives each prompt's tokens list (0: none).
        max_tokens: How many greedy tokens to add after each prompt (0: none).
        batch_size: Most prompts per forward pass.
        progress: Called with the number of tokens each batch scored.
    """
    context = loaded.backend.context_length
    for prompt, extra in zip(prompts, max_tokens, strict=True):
        if len(prompt) == 0:
            raise GptlossError("a prompt with no tokens")
        if context is not None and len(prompt) + max(extra, 1) > context:
            raise GptlossError(
                f"a prompt of {len(prompt)} tokens and {extra} more exceeds this model's context of {context} tokens"
            )
    eos = loaded.tokenizer.eos_token_id
    generated: list[list[TokenLogprob]] = [[] for _ in prompts]
    finished = [m == 0 for m in max_tokens]
    scored: list[list[TokenLogprob]] = []
    step = 0
    while step == 0 or not all(finished):
        active = [i for i in range(len(prompts)) if step == 0 or not finished[i]]
        docs, longest = [], 2
        for n, i in enumerate(active):
            ids = np.concatenate([prompts[i].ids, [t.token_id for t in generated[i]], [0]]).astype(np.int64)
            longest = max(longest, len(ids))
            docs.append(_placeholder_document(str(n), ids))
        top = max(1, *(tops[i] for i in active))
        settings = WindowSettings(max_length=longest, bos=BosPolicy.never, batch_size=batch_size)
        records = _records(_PromptRun(loaded, docs, settings, top), progress)
        for n, i in enumerate(active):
            found = records[n]
            if step == 0:
                pieces = loaded.tokenizer.pieces(prompts[i].ids.tolist())
                scored.append(_prompt_tokens(prompts[i], pieces, found[: len(prompts[i]) - 1], tops[i]))
            if finished[i]:
                continue
            after = found[-1].top[0]  # the distribution after the last real token: its top choice
            offset = len(prompts[i].text) + sum(len(t.token) for t in generated[i])
            alternatives = tuple(Choice(c.token_id, c.token, c.logprob) for c in found[-1].top[: tops[i]])
            token = TokenLogprob(after.token_id, after.token, offset, after.logprob, alternatives if tops[i] else None)
            generated[i].append(token)  # the end-of-sequence token too: it is a generated token (see Completion)
            finished[i] = len(generated[i]) >= max_tokens[i] or (eos is not None and after.token_id == eos)
        step += 1
    out = []
    for i, prompt in enumerate(prompts):
        stopped = eos is not None and bool(generated[i]) and generated[i][-1].token_id == eos
        out.append(Completion(prompt, scored[i], generated[i], "stop" if stopped else "length"))
    return out


def _placeholder_document(name: str, ids: np.ndarray) -> TokenizedDocument:
    """Token ids to score as they are (their text is not needed: records carry ids and log-probabilities)."""
    n = len(ids)
    zeros = np.zeros(n, dtype=np.int64)
    return TokenizedDocument(Document("", name), ids, zeros, zeros)


def _records(run: _PromptRun, progress: Progress | None) -> list[list[TokenRecord]]:
    found: list[list[TokenRecord]] = [[] for _ in run.documents]
    for chunk in run.chunks(progress):
        found[chunk.doc].extend(r for r in chunk.records if isinstance(r, TokenRecord))
    return found


def _prompt_tokens(prompt: Prompt, pieces: list[str], records: list[TokenRecord], top: int) -> list[TokenLogprob]:
    """The prompt's tokens (each shown as the tokenizer's piece for it, <bos> say): the first without a log p,
    each other with its record's (the records of tokens 1..n-1)."""
    by_position = {r.index: r for r in records}
    out = []
    for position, token_id in enumerate(prompt.ids.tolist()):
        record = by_position.get(position)
        text = pieces[position]
        if record is None:
            out.append(TokenLogprob(int(token_id), text, int(prompt.starts[position]), None, None))
            continue
        alternatives = tuple(Choice(c.token_id, c.token, c.logprob) for c in record.top[:top])
        logprob = record.logprob
        out.append(TokenLogprob(int(token_id), text, int(prompt.starts[position]), logprob, alternatives))
    return out
