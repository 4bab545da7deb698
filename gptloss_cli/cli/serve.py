"""`gptloss serve`: the models loaded once, answering over HTTP (needs pip install 'gptloss[serve]')."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any, Optional

import typer

from ..errors import GptlossError, UsageError
from ..models.spec import DEFAULT_MODEL, Device, Dtype, LoadedModel, ModelRequest
from . import console
from .console import note
from .options import DeviceOpt, DtypeOpt, TrustOpt

LIMITS = "Limits"


def serve(
    model: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--model",
            "-m",
            help="A model to serve (bundled alias, .gguf file, model directory or hub id); repeat for several, the "
            "first is the default. Requests name a model by this text (a path also by its last part).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="The address to listen on; anything but 127.0.0.1 opens it to others.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="The port (0: a free one, printed when ready).")] = 8000,
    api_key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            envvar="GPTLOSS_API_KEY",
            help="Require Authorization: Bearer KEY on every API request (the page asks for it).",
            show_default=False,
        ),
    ] = None,
    cors_origin: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            help="Let pages from this origin call the API from a browser (off by default).", show_default=False
        ),
    ] = None,
    max_chars: Annotated[
        int, typer.Option(min=1, rich_help_panel=LIMITS, help="Most characters of input in one request.")
    ] = 200_000,
    max_request_tokens: Annotated[
        int, typer.Option(min=1, rich_help_panel=LIMITS, help="Most tokens scored for one request.")
    ] = 32_768,
    max_new_tokens: Annotated[
        int, typer.Option(min=0, max=256, rich_help_panel=LIMITS, help="Most greedy tokens a completion adds.")
    ] = 16,
    queue_size: Annotated[
        int,
        typer.Option(min=1, rich_help_panel=LIMITS, help="Requests waiting at most; more get 503 and Retry-After."),
    ] = 256,
    batch_window_ms: Annotated[
        float,
        typer.Option(min=0, rich_help_panel=LIMITS, help="How long a request waits for others to share its batch."),
    ] = 5.0,
    device: DeviceOpt = Device.auto,
    dtype: DtypeOpt = Dtype.auto,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Serve models over HTTP: OpenAI-style /v1/completions with echo and logprobs (for evaluation harnesses),
    vLLM's /tokenize, /detokenize and /tokenizer_info, gptloss's own /v1/score, /v1/tokens and /v1/compare
    (answering in the command line's JSON), a page at / to look at a text's tokens, and the API's docs at /docs.

    Concurrent requests are scored together in batches. The models are loaded once; a request can name only
    them. Binds 127.0.0.1 unless --host says otherwise; SIGTERM or Ctrl-C stops taking requests, finishes
    those in flight and exits.
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise GptlossError("serve needs its extra: pip install 'gptloss[serve]'") from None
    from ..serve.app import ServeSettings, create_app
    from ..serve.handlers import Limits

    if console.world().parallel:
        raise UsageError("serve runs as one process: start it without torchrun")
    specs = list(model or [DEFAULT_MODEL])
    requests = [ModelRequest(s, device, dtype, trust_remote_code) for s in specs]
    sock = _listen(host, port)
    models: dict[str, LoadedModel] = {}
    for request in requests:
        loaded = console.load(request)
        for name in _names(request.spec):
            models.setdefault(name, loaded)
    settings = ServeSettings(
        Limits(max_chars, max_request_tokens, max_new_tokens),
        queue_size=queue_size,
        window=batch_window_ms / 1000,
        api_key=api_key or None,
        cors_origins=tuple(cors_origin or ()),
    )
    app = create_app(models, settings, log=note)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    url = f"http://{shown}:{bound[1]}"

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=None)
    server = _server(uvicorn, config)
    ready = app.router.lifespan_context

    @asynccontextmanager
    async def announce(app_: Any) -> AsyncIterator[None]:
        async with ready(app_):
            note(f"serving {', '.join(_unique(models))} at {url} (page at /, API at /v1, docs at /docs)")
            yield

    app.router.lifespan_context = announce
    server.run(sockets=[sock])
    note("stopped")


def _server(uvicorn: Any, config: Any) -> Any:
    """A uvicorn server that stops gracefully on SIGTERM or Ctrl-C (stop taking requests, finish those in
    flight) and then returns, so the command exits 0 (uvicorn's own would raise the signal again); a second
    signal stops at once."""
    import signal

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            def stop(signum: int, frame: object) -> None:
                again: bool = getattr(self, "should_exit", False)
                self.force_exit, self.should_exit = again, True

            kept = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in kept.items():
                    signal.signal(s, handler)

    return Server(config)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, so a port in use is said in one line before any model loads."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GptlossError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _names(spec: str) -> list[str]:
    """What requests may call a model: the spec as given, and for a path its last part."""
    names = [spec]
    tail = os.path.basename(os.path.normpath(spec))
    if tail and tail != spec:
        names.append(tail)
    return names


def _unique(models: dict[str, LoadedModel]) -> list[str]:
    seen: dict[int, str] = {}
    for name, loaded in models.items():
        seen.setdefault(id(loaded), name)
    return list(seen.values())
