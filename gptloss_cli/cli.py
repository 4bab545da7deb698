"""The `gptloss` command line: parse options, call the library, hand results to render.

Heavy imports (torch, transformers) happen inside the commands so `--help` answers at once.
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
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, RenderableType

from . import __version__
from .errors import GptlossError
from .inputs import DecodeErrors
from .models import BUNDLED, DEFAULT_MODEL, Device, Dtype
from .options import (
    BatchSizeOpt,
    BosOpt,
    DeviceOpt,
    DtypeOpt,
    EncodingOpt,
    ErrorsOpt,
    Format,
    FormatOpt,
    MaxLengthOpt,
    ModelOpt,
    OutputOpt,
    StrideOpt,
    TrustOpt,
)
from .windows import BosPolicy

app = typer.Typer(
    help="Score text with causal language models: per-token cross-entropy, perplexity, bits per byte.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
F = TypeVar("F", bound=Callable[..., Any])


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


@app.command()
@handles_errors
def score(
    paths: Annotated[
        list[str], typer.Argument(help="Text files to score; - reads standard input.", show_default=False)
    ],
    model: ModelOpt = DEFAULT_MODEL,
    fmt: FormatOpt = Format.table,
    max_length: MaxLengthOpt = None,
    stride: StrideOpt = None,
    batch_size: BatchSizeOpt = 8,
    bos: BosOpt = BosPolicy.auto,
    device: DeviceOpt = Device.auto,
    dtype: DtypeOpt = Dtype.auto,
    output: OutputOpt = None,
    encoding: EncodingOpt = "utf-8",
    errors: ErrorsOpt = DecodeErrors.strict,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Perplexity, bits per byte and friends for each file and in total.

    Long texts are scored in windows of --max-length tokens that advance by --stride; every token is scored once.
    """
    from .inputs import read_documents

    documents = read_documents(paths, encoding, errors)
    loaded = _load(model, device, dtype, trust_remote_code)  # first: it overlaps tokenizer parsing with torch's import
    from .api import score_documents
    from .engine import WindowSettings
    from .render import score_table, to_json

    settings = WindowSettings(max_length=max_length, stride=stride, bos=bos, batch_size=batch_size)
    with _progress("scoring") as (on_total, on_advance):
        result = score_documents(loaded, documents, settings, progress=on_advance, on_tokenized=on_total)
    if result.total.tokens_scored == 0:
        which = documents[0].source if len(documents) == 1 else "none of the inputs"
        raise GptlossError(f"{which}: nothing to score (no token has a preceding token or BOS to be predicted from)")
    for doc in result.documents:
        if doc.totals.tokens_scored == 0:
            _warn(f"{doc.source}: nothing to score (0 tokens)")
    _emit(to_json(result.to_dict()) if fmt is Format.json else score_table(result), output)


@app.command()
@handles_errors
def models(fmt: FormatOpt = Format.table) -> None:
    """List the bundled models: installed or not, converted (cached) or not, and size."""
    from .catalog import bundled_status, status_table
    from .render import to_json

    rows = [bundled_status(b) for b in BUNDLED.values()]
    if fmt is Format.json:
        _emit(to_json({"schema": "gptloss.models/v1", "models": rows}), None)
    else:
        _emit(status_table(rows), None)


def _warn(message: str) -> None:
    stderr().print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _load(spec: str, device: Device, dtype: Dtype, trust_remote_code: bool) -> Any:
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
            _warn(f"{loaded.info.dtype} matmuls are emulated on this CPU ({capability}): far slower than float32")
    return loaded


@contextmanager
def _progress(label: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(set_total, advance) callbacks driving a progress bar on stderr, shown only on a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    err = stderr()
    if not err.is_terminal:
        yield (lambda _n: None), (lambda _n: None)
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("tokens"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield (lambda n: bar.update(task, total=n)), (lambda n: bar.advance(task, n))


def _emit(content: RenderableType | str, output: Path | None) -> None:
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
    _write_atomic(output, content)


def _write_atomic(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise GptlossError(f"{path}: the folder {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    os._exit(code or 0)
