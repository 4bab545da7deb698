"""What the worker runs for each kind of request, on a batch of requests for one model and one setting: each
request's input checked and tokenized on its own (a bad one fails alone), then the batch scored as one run of
the task the command line runs, and the results split back per request, in the command line's schemas."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ..core.plan import WindowSettings
from ..core.totals import Bootstrap
from ..core.windows import TokenizedDocument
from ..errors import GptlossError
from ..inputs.document import Document
from ..models.spec import LoadedModel
from ..render.tokens import tokens_document
from ..tasks.analyses import Analyses
from ..tasks.job import Pretokenized
from ..tasks.logprobs import Completion, Prompt, complete, id_prompt, text_prompt
from ..tasks.score import ScoreRun
from ..tasks.tokens import TokenRecord, TokenRun, WordRecord
from .work import Handler, Request, ServeError


@dataclass(frozen=True)
class Limits:
    """Per-request limits: characters of input, tokens to score, greedy tokens to add."""

    chars: int = 200_000
    tokens: int = 32_768
    new_tokens: int = 16


@dataclass(frozen=True)
class CompletionWork:
    prompts: tuple[str | tuple[int, ...], ...]
    top: int
    max_tokens: int


@dataclass(frozen=True)
class ScoreWork:
    documents: tuple[Document, ...]
    settings: WindowSettings
    analyses: Analyses
    bootstrap: Bootstrap | None


@dataclass(frozen=True)
class TokensWork:
    documents: tuple[Document, ...]
    settings: WindowSettings
    top_k: int
    unit: str


@dataclass(frozen=True)
class CompareWork:
    other: str  # model B's name (the request's model is A)
    documents: tuple[Document, ...]
    settings: WindowSettings
    top: int
    bootstrap: Bootstrap | None
    binoculars: bool
    spans: bool = False  # each document's paired units too (DocumentPair.span_records)


def handlers(models: dict[str, LoadedModel], limits: Limits) -> dict[str, Handler]:
    """The worker's handlers, over the models loaded at start."""

    def completions(batch: Sequence[Request]) -> list[Any]:
        loaded = models[batch[0].model]
        out: list[Any] = [None] * len(batch)
        prompts: list[Prompt] = []
        owners: list[tuple[int, CompletionWork]] = []
        for n, request in enumerate(batch):
            work: CompletionWork = request.payload
            try:
                mine = [_prompt(loaded, p) for p in work.prompts]
                _check_tokens(sum(len(p) for p in mine), limits)
                context = loaded.backend.context_length
                for p in mine:
                    if context is not None and len(p) + max(work.max_tokens, 1) > context:
                        raise ServeError(
                            400,
                            f"a prompt of {len(p)} tokens and {work.max_tokens} more exceeds the model's context of "
                            f"{context} tokens",
                        )
            except ServeError as exc:
                out[n] = exc
                continue
            prompts += mine
            owners += [(n, work)] * len(mine)
            request.tokens = sum(len(p) for p in mine)
        if prompts:
            tops = [w.top for _, w in owners]
            found = complete(loaded, prompts, tops=tops, max_tokens=[w.max_tokens for _, w in owners])
            parts: dict[int, list[Completion]] = {}
            for (n, _), completion in zip(owners, found, strict=True):
                parts.setdefault(n, []).append(completion)
            for n, completions in parts.items():
                out[n] = completions
        return out

    def score(batch: Sequence[Request]) -> list[Any]:
        loaded = models[batch[0].model]
        first: ScoreWork = batch[0].payload
        runs = _prepared(batch, lambda w: ScoreRun(loaded, list(w.documents), w.settings, analyses=w.analyses), limits)
        ready = [r for r in runs if isinstance(r, ScoreRun)]
        tokenized = [t for r in ready for t in r.tokenized]
        scores: list[Any] = []
        if ready:
            merged = _Merged(loaded, tokenized, first.settings, first.analyses)
            scores = sorted(merged.scores(keep_losses=False), key=lambda s: s.index)
        out: list[Any] = []
        offset = 0
        for request, ran in zip(batch, runs, strict=True):
            if isinstance(ran, ServeError):
                out.append(ran)
                continue
            run = ran
            mine = [replace(s, index=s.index - offset, source=run.documents[s.index - offset].source) for s in
                    scores[offset : offset + len(run.documents)]]  # fmt: skip
            offset += len(run.documents)
            work = request.payload
            out.append(run.result(run.accumulator(mine), work.bootstrap).to_dict())
        return out

    def tokens(batch: Sequence[Request]) -> list[Any]:
        loaded = models[batch[0].model]
        first: TokensWork = batch[0].payload
        runs = _prepared(
            batch, lambda w: TokenRun(loaded, list(w.documents), w.settings, top_k=w.top_k, unit=w.unit), limits
        )
        ready = [r for r in runs if isinstance(r, TokenRun)]
        tokenized = [t for r in ready for t in r.tokenized]
        records: list[list[TokenRecord | WordRecord]] = [[] for _ in tokenized]
        totals: list[Any] = [None] * len(tokenized)
        if ready:
            merged = _MergedTokens(loaded, tokenized, first.settings, first.top_k, first.unit)
            for chunk in merged.chunks():
                records[chunk.doc].extend(chunk.records)
                if chunk.totals is not None:
                    totals[chunk.doc] = chunk.totals
        out: list[Any] = []
        offset = 0
        for made in runs:
            if isinstance(made, ServeError):
                out.append(made)
                continue
            n = len(made.documents)
            part = slice(offset, offset + n)
            offset += n
            out.append(tokens_document(made.header(), made.documents, records[part], totals[part], made.unit))
        return out

    def compare(batch: Sequence[Request]) -> list[Any]:
        from ..tasks.compare import compare_documents

        out: list[Any] = []
        for request in batch:
            work: CompareWork = request.payload
            a, b = models[request.model], models[work.other]
            try:
                result = compare_documents(
                    a, b, list(work.documents), settings=work.settings, top_n=work.top, bootstrap=work.bootstrap,
                    binoculars=work.binoculars,
                )  # fmt: skip
            except GptlossError as exc:
                out.append(ServeError(400, str(exc)))
                continue
            made = result.to_dict()
            if work.spans:
                for entry, doc in zip(made["documents"], result.documents, strict=True):
                    entry["spans"] = doc.span_records()
            request.tokens = int(made.get("paired", {}).get("n", 0) or 0)
            out.append(made)
        return out

    return {"complete": completions, "score": score, "tokens": tokens, "compare": compare}


def _prompt(loaded: LoadedModel, prompt: str | tuple[int, ...]) -> Prompt:
    try:
        return text_prompt(loaded, prompt) if isinstance(prompt, str) else id_prompt(loaded, prompt)
    except GptlossError as exc:
        raise ServeError(400, str(exc)) from exc


R = TypeVar("R", ScoreRun, TokenRun)


def _prepared(batch: Sequence[Request], make: Callable[[Any], R], limits: Limits) -> list[R | ServeError]:
    """Each request's run, tokenized and checked on its own (`make` from its payload), or what is wrong with it:
    a request with nothing to score or too many tokens fails alone, before the batch is scored."""
    runs: list[R | ServeError] = []
    for request in batch:
        try:
            run = make(request.payload)
            run.require_tokens()
            request.tokens = run.tokens_to_score()
            _check_tokens(request.tokens, limits)
            runs.append(run)
        except GptlossError as exc:
            runs.append(ServeError(400, str(exc)))
        except ServeError as exc:
            runs.append(exc)
    return runs


def _check_tokens(count: int, limits: Limits) -> None:
    if count > limits.tokens:
        raise ServeError(
            413, f"{count:,} tokens to score: more than this server's limit of {limits.tokens:,} per request"
        )


class _Merged(Pretokenized, ScoreRun):
    """One ScoreRun over documents the requests already tokenized."""

    def __init__(
        self, loaded: LoadedModel, tokenized: list[TokenizedDocument], settings: WindowSettings, analyses: Analyses
    ):
        self.tokens = tokenized
        super().__init__(loaded, self.named(), settings, analyses=analyses)


class _MergedTokens(Pretokenized, TokenRun):
    """One TokenRun over documents the requests already tokenized."""

    def __init__(
        self, loaded: LoadedModel, tokenized: list[TokenizedDocument], settings: WindowSettings, top_k: int, unit: str
    ):
        self.tokens = tokenized
        super().__init__(loaded, self.named(), settings, top_k=top_k, unit=unit)
