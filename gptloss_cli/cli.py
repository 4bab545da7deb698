"""The `gptloss` command line: parse options, call the library, hand results to render.

Heavy imports (torch, transformers) happen inside the commands so `--help` answers at once.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from . import __version__
from .compare_cmd import compare
from .console import emit, handles_errors, load, progress, warn
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
from .tokens_cmd import tokens
from .windows import BosPolicy

app = typer.Typer(
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
    loaded = load(model, device, dtype, trust_remote_code)  # first: it overlaps tokenizer parsing with torch's import
    from .api import score_documents
    from .engine import WindowSettings
    from .render import score_table, to_json

    settings = WindowSettings(max_length=max_length, stride=stride, bos=bos, batch_size=batch_size)
    with progress("scoring") as (on_total, on_advance):
        result = score_documents(loaded, documents, settings, progress=on_advance, on_tokenized=on_total)
    if result.total.tokens_scored == 0:
        which = documents[0].source if len(documents) == 1 else "none of the inputs"
        raise GptlossError(f"{which}: nothing to score (no token has a preceding token or BOS to be predicted from)")
    for doc in result.documents:
        if doc.totals.tokens_scored == 0:
            warn(f"{doc.source}: nothing to score (0 tokens)")
    emit(to_json(result.to_dict()) if fmt is Format.json else score_table(result), output)


app.command()(handles_errors(tokens))
app.command()(handles_errors(compare))


@app.command()
@handles_errors
def models(fmt: FormatOpt = Format.table) -> None:
    """List the bundled models: installed or not, converted (cached) or not, and size."""
    from .catalog import bundled_status, status_table
    from .render import to_json

    rows = [bundled_status(b) for b in BUNDLED.values()]
    if fmt is Format.json:
        emit(to_json({"schema": "gptloss.models/v1", "models": rows}), None)
    else:
        emit(status_table(rows), None)


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
