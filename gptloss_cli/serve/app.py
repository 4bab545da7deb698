"""`gptloss serve`'s HTTP API (FastAPI): OpenAI-style completions with echo and logprobs, vLLM's tokenizer
endpoints, gptloss's own score / tokens / compare in the command line's JSON schemas, and the page at /.

Every request body is read with a size limit and checked against its class in serve.bodies (a completions
request against serve.openai's rules too); what is wrong with it is a 4xx with an OpenAI-style
`{"error": {"message", "type"}}` and the server goes on. A request names only the models loaded
at start. The scoring happens on the worker (serve.work), which batches concurrent requests.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError

from ..core.totals import Bootstrap
from ..core.windows import BosPolicy
from ..inputs.chat import chat_renderer
from ..inputs.dataset import ChatRecord
from ..inputs.document import Document
from ..inputs.fields import BadRecord, check_unicode, parse_messages
from ..models.spec import LoadedModel
from ..tasks.analyses import Analyses
from ..tasks.logprobs import Completion
from . import openai
from .bodies import (
    Body,
    CompareBody,
    CompletionRequest,
    DetokenizeBody,
    InputBody,
    ScoreBody,
    TokenizeBody,
    TokensBody,
    schema,
)
from .handlers import CompareWork, CompletionWork, Limits, ScoreWork, TokensWork, handlers
from .work import Request as Work
from .work import ServeError, Worker

# The page loads nothing from elsewhere: its script and style are inline, and it talks only to this server.
PAGE_POLICY = "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
OPEN = ("/", "/docs", "/openapi.json", "/health", "/docs/oauth2-redirect")  # reachable without the API key


@dataclass(frozen=True)
class ServeSettings:
    """How the service runs: its limits, queue, gathering window, API key and allowed browser origins."""

    limits: Limits = Limits()
    max_body: int = 8 * 1024 * 1024
    queue_size: int = 256
    window: float = 0.005
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()


def create_app(
    models: dict[str, LoadedModel], settings: ServeSettings, log: Callable[[str], None] = lambda line: None
) -> FastAPI:
    """The service over `models` (name -> loaded model; the first is the default), logging a line per request."""
    default = next(iter(models))
    worker = Worker(handlers(models, settings.limits), settings.queue_size, settings.window)
    page = resources.files("gptloss_cli.serve").joinpath("page.html").read_text(encoding="utf-8")

    async def lifespan(app: FastAPI) -> Any:
        worker.start()
        yield
        worker.stop()

    app = FastAPI(
        title="gptloss",
        summary="Per-token log-probabilities, perplexity and comparisons from causal language models.",
        lifespan=lifespan,
    )
    app.state.worker = worker
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"], allow_headers=["*"]
        )

    app.add_middleware(Guard, api_key=settings.api_key, log=log)

    def pick(name: str | None) -> str:
        if name is None:
            return default
        if name not in models:
            raise ServeError(404, f"model {name!r} is not served here; these are: {', '.join(models)}", "not_found")
        return name

    async def body(request: Request, kind: type[Body]) -> Any:
        size = 0
        parts = []
        async for part in request.stream():
            size += len(part)
            if size > settings.max_body:
                raise ServeError(413, f"the request body is over this server's limit of {settings.max_body:,} bytes")
            parts.append(part)
        try:
            data = json.loads(b"".join(parts))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ServeError(400, f"the request body is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ServeError(400, "the request body must be a JSON object")
        try:
            return kind.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "body"
            raise ServeError(400, f"{where}: {first['msg']}") from None

    async def run(request: Request, work: Work) -> Any:
        future = worker.submit(work)
        waiting = asyncio.wrap_future(future)
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=0.25)
            if done:
                request.state.tokens = work.tokens
                return waiting.result()
            if await request.is_disconnected():
                work.gone.set()
                future.cancel()
                raise ServeError(499, "the client went away")

    def check_chars(texts: list[str]) -> int:
        size = sum(len(t) for t in texts)
        if size > settings.limits.chars:
            raise ServeError(
                413, f"{size:,} characters: more than this server's limit of {settings.limits.chars:,} per request"
            )
        return size

    def documents(given: InputBody, model: str) -> tuple[Document, ...]:
        """The request's documents, with the masks the command line's dataset options give."""
        kinds = [k for k in ("texts", "prompts", "messages") if getattr(given, k) is not None]
        if len(kinds) != 1:
            raise ServeError(400, "give one of texts, prompts (with completions) or messages")
        if (given.prompts is None) != (given.completions is None):
            raise ServeError(400, "prompts and completions go together")
        if given.score_roles is not None and given.messages is None:
            raise ServeError(400, "score_roles applies to messages only")
        docs: list[Document] = []
        try:
            if given.texts is not None:
                docs = [Document(t, f"text-{i + 1}") for i, t in enumerate(given.texts)]
            elif given.prompts is not None and given.completions is not None:
                if len(given.prompts) != len(given.completions):
                    raise ServeError(400, "prompts and completions must be lists of the same length")
                docs = [
                    Document(p + c, f"text-{i + 1}", ((len(p), len(p) + len(c)),))
                    for i, (p, c) in enumerate(zip(given.prompts, given.completions, strict=True))
                ]
            elif given.messages is not None:
                loaded = models[model]
                prepended = given.bos is not BosPolicy.never and loaded.tokenizer.bos_token_id is not None
                render = chat_renderer(loaded.tokenizer, given.score_roles or ["assistant"], prepended, model)
                for i, chat in enumerate(given.messages):
                    where = f"messages[{i}]"
                    docs.append(render(ChatRecord(parse_messages(chat, where), f"chat-{i + 1}")))
            for doc in docs:
                check_unicode(doc.text, doc.source)
        except BadRecord as exc:
            raise ServeError(400, str(exc)) from None
        except ServeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a chat template that fails on this input
            raise ServeError(400, str(exc)) from None
        if not docs:
            raise ServeError(400, "nothing to score: no texts")
        check_chars([d.text for d in docs])
        return tuple(docs)

    @app.exception_handler(ServeError)
    async def refused(request: Request, exc: ServeError) -> Response:
        return error(exc)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "waiting": worker.waiting(), "scored": dict(worker.scored)}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "gptloss",
                    "max_model_len": loaded.backend.context_length,
                    "default": name == default,
                }
                for name, loaded in models.items()
            ],
        }

    @app.post("/v1/completions", openapi_extra=schema(CompletionRequest))
    async def completions(request: Request) -> Any:
        given: CompletionRequest = await body(request, CompletionRequest)
        model = pick(given.model)
        max_tokens = openai.new_tokens(given, settings.limits.new_tokens)
        prompts = openai.prompts(given.prompt)
        size = check_chars([p for p in prompts if isinstance(p, str)]) + sum(
            len(p) for p in prompts if not isinstance(p, str)
        )
        top = given.logprobs or 0
        work = Work("complete", model, ("complete",), CompletionWork(prompts, top, max_tokens), size)
        found: list[Completion] = await run(request, work)
        return openai.response(model, found, given)

    @app.post("/tokenize", openapi_extra=schema(TokenizeBody))
    async def tokenize(request: Request) -> Any:
        given: TokenizeBody = await body(request, TokenizeBody)
        loaded = models[pick(given.model)]
        check_chars([given.prompt])
        ids, _ = await asyncio.to_thread(loaded.tokenizer.encode, given.prompt, given.add_special_tokens)
        return {"tokens": ids.tolist(), "count": len(ids), "max_model_len": loaded.backend.context_length}

    @app.post("/detokenize", openapi_extra=schema(DetokenizeBody))
    async def detokenize(request: Request) -> Any:
        given: DetokenizeBody = await body(request, DetokenizeBody)
        loaded = models[pick(given.model)]
        vocab = loaded.backend.vocab_size
        bad = [t for t in given.tokens if not 0 <= t < vocab]
        if bad:
            raise ServeError(400, f"token id {bad[0]} is not in this model's vocabulary (0 to {vocab - 1})")
        text = await asyncio.to_thread(loaded.tokenizer.backend.decode, given.tokens, skip_special_tokens=False)
        return {"prompt": text}

    @app.get("/tokenizer_info")
    async def tokenizer_info(model: str | None = None) -> Any:
        loaded = models[pick(model)]
        special = loaded.tokenizer.special_tokens
        return {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": special.get("bos_token"),
            "eos_token": special.get("eos_token"),
            "pad_token": special.get("pad_token"),
            "unk_token": special.get("unk_token"),
            "chat_template": loaded.tokenizer.chat_template,
            "model_max_length": loaded.backend.context_length,
            "add_bos_token": loaded.tokenizer.adds_bos,
        }

    @app.post("/v1/score", openapi_extra=schema(ScoreBody))
    async def score(request: Request) -> Any:
        given: ScoreBody = await body(request, ScoreBody)
        model = pick(given.model)
        docs = documents(given, model)
        analyses = Analyses(given.by_position, given.min_k if given.membership else None)
        boot = Bootstrap(given.bootstrap, given.seed) if given.bootstrap else None
        settings_ = given.window_settings()
        work = ScoreWork(docs, settings_, analyses, boot)
        return await run(request, Work("score", model, (settings_, analyses), work, sum(len(d.text) for d in docs)))

    @app.post("/v1/tokens", openapi_extra=schema(TokensBody))
    async def tokens(request: Request) -> Any:
        given: TokensBody = await body(request, TokensBody)
        model = pick(given.model)
        docs = documents(given, model)
        settings_ = given.window_settings()
        work = TokensWork(docs, settings_, given.top_k, given.unit)
        key = (settings_, given.top_k, given.unit)
        return await run(request, Work("tokens", model, key, work, sum(len(d.text) for d in docs)))

    @app.post("/v1/compare", openapi_extra=schema(CompareBody))
    async def compare(request: Request) -> Any:
        given: CompareBody = await body(request, CompareBody)
        model, other = pick(given.model), pick(given.model_b)
        docs = documents(given, model)
        boot = Bootstrap(given.bootstrap, given.seed) if given.bootstrap else None
        work = CompareWork(other, docs, given.window_settings(), given.top, boot, given.binoculars, given.spans)
        return await run(request, Work("compare", model, uuid.uuid4().hex, work, sum(len(d.text) for d in docs)))

    return app


def error(exc: ServeError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return JSONResponse(
        {"error": {"message": exc.message, "type": exc.kind, "code": exc.status}},
        status_code=exc.status,
        headers=headers,
    )


class Guard:
    """The API key check and the request log, as plain ASGI (a client's disconnect still reaches the routes)."""

    def __init__(self, app: Any, api_key: str | None, log: Callable[[str], None]) -> None:
        self.app, self.api_key, self.log = app, api_key, log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        state = scope.setdefault("state", {})
        state["tokens"] = 0
        status = [0]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        if self.api_key is not None and scope["path"] not in OPEN and scope["method"] != "OPTIONS":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, f"Bearer {self.api_key}".encode()):
                refusal = ServeError(
                    401, "a valid API key is needed: Authorization: Bearer KEY", "authentication_error"
                )
                await error(refusal)(scope, receive, sending)
                self._line(scope, status[0], began)
                return
        try:
            await self.app(scope, receive, sending)
        finally:
            self._line(scope, status[0] or 499, began)

    def _line(self, scope: Any, status: int, began: float) -> None:
        ms = (time.perf_counter() - began) * 1000
        tokens = scope.get("state", {}).get("tokens", 0)
        self.log(f"{scope['method']} {scope['path']} {status} {tokens} tokens {ms:.0f} ms")
