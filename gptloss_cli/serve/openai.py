"""OpenAI's legacy completions, as this server speaks them: which requests it takes (it scores, and adds at most
a few greedy tokens; anything asking for sampling is refused), how a `prompt` of any of the four shapes becomes
prompts, and how completions go back in the legacy response shape (`choices[i].logprobs.{tokens,
token_logprobs, top_logprobs, text_offset}`, `usage`) that evaluation harnesses read."""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..tasks.logprobs import Completion, TokenLogprob
from .bodies import CompletionRequest
from .work import ServeError


def new_tokens(given: CompletionRequest, most: int) -> int:
    """How many greedy tokens the request asks for (OpenAI's default 16 when it says none), or the 400 that
    says why this server does not do what it asks (`most`: the server's limit on new tokens)."""
    max_tokens = 16 if given.max_tokens is None else given.max_tokens
    sampling = (given.temperature or 0) > 0 and max_tokens > 0
    if sampling or (given.top_p is not None and given.top_p < 1 and max_tokens > 0):
        raise ServeError(400, "this server scores: it gives greedy tokens only (temperature 0), no sampling")
    if given.n != 1 or (given.best_of or 1) != 1:
        raise ServeError(400, "this server scores: n and best_of must be 1")
    if given.stream:
        raise ServeError(400, "this server does not stream: send stream false")
    if (given.presence_penalty or 0) or (given.frequency_penalty or 0) or given.logit_bias or given.suffix:
        raise ServeError(400, "this server scores: no penalties, logit_bias or suffix")
    if max_tokens > most:
        raise ServeError(400, f"max_tokens {max_tokens}: this server adds at most {most}")
    return max_tokens


def prompts(prompt: str | list[str] | list[int] | list[list[int]]) -> tuple[str | tuple[int, ...], ...]:
    """The request's prompts: a string, a list of strings, one list of token ids, or a list of them."""
    if isinstance(prompt, str):
        return (prompt,)
    if not prompt:
        raise ServeError(400, "prompt: an empty list")
    if all(isinstance(p, int) for p in prompt):
        return (tuple(int(p) for p in prompt),)  # type: ignore[arg-type]
    if all(isinstance(p, str) for p in prompt):
        return tuple(str(p) for p in prompt)
    return tuple(tuple(int(t) for t in p) for p in prompt)  # type: ignore[union-attr]


def response(model: str, found: list[Completion], given: CompletionRequest) -> dict[str, Any]:
    """The completions response: one choice per prompt, in order, and the tokens used."""
    stops = [given.stop] if isinstance(given.stop, str) else list(given.stop or [])
    shaped = [choice(i, c, given.echo, given.logprobs, stops) for i, c in enumerate(found)]
    used = sum(len(c.prompt) for c in found)
    made = sum(len(generated) for _, generated in shaped)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [c for c, _ in shaped],
        "usage": {"prompt_tokens": used, "completion_tokens": made, "total_tokens": used + made},
    }


def choice(
    index: int, found: Completion, echo: bool, logprobs: int | None, stops: list[str]
) -> tuple[dict[str, Any], list[TokenLogprob]]:
    """One choice in the legacy completions shape, and the generated tokens it keeps: the text (the prompt's too
    with echo), and with `logprobs` the tokens, their log-probabilities (null for the first prompt token), the
    top alternatives (each token's own among them, as vLLM gives them) and each token's offset in the text. An
    end-of-sequence token the model chose is listed last among the tokens (not in the text), as vLLM lists it."""
    generated = list(found.generated)
    reason = found.finish_reason
    text = found.generated_text
    for stop in stops:  # a stop sequence ends the text before it
        at = text.find(stop) if stop else -1
        if at >= 0:
            kept, length = [], 0
            for token in found.text_tokens:
                if length >= at:
                    break
                kept.append(token)
                length += len(token.token)
            generated, text, reason = kept, text[:at], "stop"
    shown = [*found.prompt_tokens, *generated] if echo else generated
    shaped: dict[str, Any] = {
        "index": index,
        "text": (found.prompt.text if echo else "") + text,
        "logprobs": None,
        "finish_reason": reason,
    }
    if logprobs is not None:
        tops: list[dict[str, float] | None] = []
        for token in shown:
            if token.logprob is None:
                tops.append(None)
                continue
            entry = {c.token: c.logprob for c in (token.top or ())[:logprobs]}
            entry[token.token] = token.logprob
            tops.append(entry)
        shaped["logprobs"] = {  # offsets count from the prompt's start, with echo or without (as OpenAI's)
            "tokens": [t.token for t in shown],
            "token_logprobs": [t.logprob for t in shown],
            "top_logprobs": tops,
            "text_offset": [t.offset for t in shown],
        }
    return shaped, generated
