"""What the commands share: one-line errors, warnings, the model-loading spinner, progress bars, output.

Results go to stdout or, with --output, to a file that appears only when it is whole.
"""

from __future__ import annotations

import functools
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any, TypeVar

import typer
from rich.console import Console, RenderableType

from .errors import GptlossError
from .models import Device, Dtype

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def stderr() -> Console:
    return Console(stderr=True)


def handles_errors(command: F) -> F:
    """Turn a GptlossError (or any unexpected error) into one line on stderr and exit 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            print("gptloss: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("GPTLOSS_DEBUG"):
                raise
            if isinstance(exc, GptlossError):
                message = str(exc)
            else:
                message = f"unexpected error: {type(exc).__name__}: {exc} (GPTLOSS_DEBUG=1 shows the traceback)"
            print(f"gptloss: error: {message}", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def warn(message: str) -> None:
    """A yellow "warning:" and `message` as plain text (it may hold file names and record text)."""
    from rich.markup import escape

    stderr().print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def load(spec: str, device: Device, dtype: Dtype, trust_remote_code: bool) -> Any:
    from .models import load_model

    err = stderr()

    def stage(message: str) -> None:
        err.print(message, highlight=False, soft_wrap=True)

    with err.status(f"loading {spec}", spinner="dots") if err.is_terminal else nullcontext():
        loaded = load_model(spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code, progress=stage)
    if loaded.info.device == "cpu" and loaded.info.dtype != "float32":
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
        if capability in ("DEFAULT", "AVX2"):
            warn(f"{loaded.info.dtype} matmuls are emulated on this CPU ({capability}): far slower than float32")
    return loaded


class Bar:
    """Progress callbacks: tokens to score (total), tokens scored (advance), documents done (document)."""

    def __init__(self, bar: Any = None, task: Any = None) -> None:
        self._bar, self._task = bar, task
        self._docs = 0

    def total(self, tokens: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=tokens)

    def advance(self, tokens: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, tokens)

    def document(self, item: T) -> T:
        """Count one finished document; returns `item` so a comprehension can pass it through."""
        self._docs += 1
        if self._bar is not None:
            self._bar.update(self._task, docs=self._docs)
        return item


@contextmanager
def progress(label: str, documents: int | None = None) -> Iterator[Bar]:
    """A progress bar on stderr, shown only on a terminal: tokens, documents, rates and time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rates(ProgressColumn):
        def render(self, task: Any) -> Text:
            elapsed = task.elapsed or 0.0
            if elapsed <= 0:
                return Text("")
            rate = f"{task.completed / elapsed:,.0f} tok/s"
            if documents:
                rate += f" {task.fields['docs']}/{documents} docs {task.fields['docs'] / elapsed:,.1f}/s"
            return Text(rate)

    err = stderr()
    if not err.is_terminal:
        yield Bar()
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("tokens"), Rates())
    with Progress(*columns, TimeRemainingColumn(), console=err, transient=True) as bar:
        yield Bar(bar, bar.add_task(label, total=None, docs=0))


def emit(content: RenderableType | str, output: Path | None) -> None:
    """Print to stdout, or write the whole result to `output` atomically."""
    if output is None:
        if isinstance(content, str):
            sys.stdout.write(content)
        else:
            Console().print(content)
        return
    if not isinstance(content, str):
        buffer = io.StringIO()
        Console(file=buffer, width=120, no_color=True).print(content)
        content = buffer.getvalue()
    write_atomic(output, content)


def write_atomic(path: Path, text: str) -> None:
    with open_output(path) as handle:
        handle.write(text)


@contextmanager
def open_output(path: Path | None) -> Iterator[IO[str]]:
    """A text stream for results written as they come: stdout, or a temporary file beside `path`
    that replaces it only when everything was written (removed on any error)."""
    if path is None:
        yield sys.stdout
        return
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise GptlossError(f"{path}: the folder {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
