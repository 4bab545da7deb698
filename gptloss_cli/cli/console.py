"""The only code that talks to the terminal: warnings, the model-loading spinner, progress bars, output.

Results go to stdout or, with --output, to a file that appears only when it is whole; everything else
goes to stderr. Under torchrun or accelerate launch only rank 0 talks: the other ranks work in silence. Who
leads is the World's to say, given to the console once, when the command starts (`start`).
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..core.distributed import SOLO, World
from ..files import atomic_file
from ..models.loader import load_model
from ..models.spec import LoadedModel, ModelRequest

_world: World = SOLO  # this process's place in a launched job, set by `start` when the command starts


def start(world: World) -> None:
    """Speak for `world` from now on: only its leader (rank 0, or the only process) talks. The app calls this
    once, when a command starts."""
    global _world
    _world = world


def world() -> World:
    """The World given at start-up (its process group is not started: see World.join)."""
    return _world


def leader() -> bool:
    """Whether this process speaks: alone, or rank 0 of a launched job."""
    return _world.leader


def stderr() -> Console:
    return Console(stderr=True)


def warn(message: str) -> None:
    """A yellow "warning:" and `message` as plain text (it may hold file names and record text)."""
    from rich.markup import escape

    if not leader():
        return
    stderr().print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """A plain line on stderr."""
    if not leader():
        return
    stderr().print(message, highlight=False, soft_wrap=True)


def load(request: ModelRequest) -> LoadedModel:
    """Load a model, with a spinner on a terminal and the GGUF conversion's stages as they come."""
    err = stderr()
    spin = err.is_terminal and leader()
    with err.status(f"loading {request.spec}", spinner="dots") if spin else nullcontext():
        loaded = load_model(
            request.spec,
            device=request.device,
            dtype=request.dtype,
            trust_remote_code=request.trust_remote_code,
            progress=note,
            device_map=request.device_map,
            compile=request.compile,
            backend=request.backend,
        )
    if loaded.info.device == "cpu" and loaded.info.dtype != "float32":
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
        if capability in ("DEFAULT", "AVX2"):
            warn(f"{loaded.info.dtype} matmuls are emulated on this CPU ({capability}): far slower than float32")
    return loaded


class _Rates(ProgressColumn):
    """tokens/s, and documents done of all with their rate."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0:
            return Text("")
        rate = f"{task.completed / elapsed:,.0f} tok/s"
        documents = task.fields["documents"]
        if documents:
            rate += f" {task.fields['docs']}/{documents} docs {task.fields['docs'] / elapsed:,.1f}/s"
        return Text(rate)


class Bar:
    """A tasks.job.Tracker drawn as a progress bar (or nothing, when stderr is not a terminal)."""

    def __init__(self, bar: Progress | None = None, task: TaskID | None = None) -> None:
        self._bar, self._task = bar, task
        self._docs = 0

    def start(self, tokens: int, documents: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=tokens, documents=documents)

    def advance(self, tokens: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, tokens)

    def document(self) -> None:
        self._docs += 1
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, docs=self._docs)


@contextmanager
def progress(label: str) -> Iterator[Bar]:
    """A progress bar on stderr, shown only on a terminal: tokens, documents, rates and time left; after the
    work, why the LM head ran eagerly if --compile's compiled step failed."""
    from ..core.fused import compile_fallback

    err = stderr()
    if not err.is_terminal or not leader():
        yield Bar()
    else:
        columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("tokens"), _Rates())
        with Progress(*columns, TimeRemainingColumn(), console=err, transient=True) as bar:
            yield Bar(bar, bar.add_task(label, total=None, docs=0, documents=0))
    reason = compile_fallback()
    if reason is not None:
        note(reason)


def emit(content: RenderableType | str, output: Path | None, summary: str = "") -> None:
    """Print to stdout, or write the whole result to `output` atomically (tables 120 columns wide) and say so
    on stderr (with `summary` after the file's name)."""
    if not leader():
        return
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
    with atomic_file(output) as handle:
        handle.write(content)
    wrote(output, summary)


def wrote(path: Path, summary: str = "") -> None:
    """Say on stderr that a file was written (and what it holds)."""
    note(f"wrote {path}" + (f": {summary}" if summary else ""))


@contextmanager
def open_output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or a file that appears only when everything was written (on ranks other than 0: nowhere)."""
    if not leader():
        with open(os.devnull, "w", encoding="utf-8") as nowhere:
            yield nowhere
        return
    if path is None:
        yield sys.stdout
        return
    with atomic_file(path) as handle:
        yield handle
    wrote(path)


def color_terminal() -> bool:
    """Whether stdout takes colour (a terminal, and NO_COLOR not set)."""
    console = Console()
    return not console.no_color and console.color_system is not None
