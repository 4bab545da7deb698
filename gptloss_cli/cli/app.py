"""The `gptloss` app: the commands, and one place where every error becomes one line on stderr.

Heavy imports (torch, transformers) happen inside the commands so `--help` answers at once.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import TyperException

from .._version import __version__
from ..core.distributed import World
from ..errors import GptlossError
from . import console
from .annotate import annotate
from .compare import compare
from .explain import explain
from .filter import filter
from .merge import merge
from .models import models
from .score import score
from .serve import serve
from .tokens import tokens

if TYPE_CHECKING:
    from typer._click.core import Context as ClickContext  # typer vendors click


class Flags:
    """Help that shows a flag (--resume, --help) as taking no value: no `<bool>` placeholder beside it."""

    def get_params(self, ctx: ClickContext) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class Command(Flags, TyperCommand):
    """A command of the app."""


class Commands(Flags, TyperGroup):
    """Runs a command and translates what it raises, once for the whole app: a GptlossError (or any
    unexpected error) becomes one line on stderr and exit 1 (2 for a UsageError); GPTLOSS_DEBUG=1 shows the
    traceback. A reader that closed standard output (`| head`) ends the run quietly with 141, as `cat` does."""

    def invoke(self, ctx: ClickContext) -> Any:
        world = World.launched(os.environ)  # who this process is under a launcher: asked once, here
        console.start(world)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # exits, and usage errors (exit 2)
            raise
        except BrokenPipeError:
            if not stdout_closed():
                raise
            quiet_stdout()
            raise typer.Exit(SIGPIPE_EXIT) from None
        except KeyboardInterrupt:
            if world.leader:
                print("gptloss: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("GPTLOSS_DEBUG"):
                raise
            if isinstance(exc, GptlossError):
                # Under a launcher every rank meets the same bad input, and a failure during the work reaches
                # every rank (core.distributed): rank 0 says it once.
                if not world.leader:
                    raise typer.Exit(exc.exit_code) from None
                message, code = str(exc), exc.exit_code
            else:
                where = f"rank {world.rank}: " if world.rank else ""
                message = f"{where}unexpected error: {type(exc).__name__}: {exc} (GPTLOSS_DEBUG=1 shows the traceback)"
                code = 1
            print(f"gptloss: error: {message}", file=sys.stderr)
            raise typer.Exit(code) from None


app = typer.Typer(
    cls=Commands,
    help="Score text with causal language models: per-token cross-entropy, perplexity, bits per byte.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"gptloss {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Score text with causal language models: per-token cross-entropy, perplexity, bits per byte."""


def help_text(command: Callable[..., Any]) -> str:
    """A command's docstring with each paragraph on one line, so the terminal wraps it, not the source."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


for _command in (score, tokens, compare, merge, explain, annotate, filter, serve, models):
    app.command(help=help_text(_command), cls=Command)(_command)


def main() -> None:
    """Run the app, then leave without tearing down torch and the model (saves a second or two)."""
    code: int | str | None = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the last lines met a closed pipe
        code = code or SIGPIPE_EXIT
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code or 0)


SIGPIPE_EXIT = 128 + 13  # what a shell reports for a writer that SIGPIPE ended (cat, grep | head)


def stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # not a real file (a test runner's buffer)
        return False


def quiet_stdout() -> None:
    """Point standard output at /dev/null, so the lines still buffered for the closed pipe go nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
