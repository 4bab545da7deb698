"""The `gptloss` command line: parse options, call the library, hand results to render.

Heavy imports (torch, transformers) happen inside the commands so `--help` answers at once.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Annotated, Any

import typer

from . import __version__
from .compare_cmd import compare
from .console import emit, handles_errors, load, progress
from .dataset import DatasetOptions
from .errors import GptlossError
from .explain_cmd import explain
from .inputs import DecodeErrors
from .models import BUNDLED, DEFAULT_MODEL, Device, Dtype
from .options import (
    BatchSizeOpt,
    BootstrapOpt,
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
    PathsArg,
    ResumeOpt,
    ScoreFormat,
    ScoreFormatOpt,
    SeedOpt,
    StrideOpt,
    TrustOpt,
    dataset_options,
    score_format,
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
@dataset_options
def score(
    paths: PathsArg = None,
    model: ModelOpt = DEFAULT_MODEL,
    fmt: ScoreFormatOpt = None,
    max_length: MaxLengthOpt = None,
    stride: StrideOpt = None,
    batch_size: BatchSizeOpt = 8,
    bos: BosOpt = BosPolicy.auto,
    device: DeviceOpt = Device.auto,
    dtype: DtypeOpt = Dtype.auto,
    output: OutputOpt = None,
    resume: ResumeOpt = False,
    bootstrap: BootstrapOpt = 0,
    seed: SeedOpt = 0,
    encoding: EncodingOpt = "utf-8",
    errors: ErrorsOpt = DecodeErrors.strict,
    trust_remote_code: TrustOpt = False,
    dataset: DatasetOptions | None = None,
) -> None:
    """Perplexity, bits per byte and friends for each file (or dataset record) and in total.

    Long texts are scored in windows of --max-length tokens that advance by --stride; every token is scored once.

    With -f jsonl (the default for an --output ending in .jsonl) a line per document is written as soon as it
    is done, and --resume carries on a stopped run.
    """
    from .sources import documents_digest, documents_for, nothing_to_score, read_inputs

    fmt = fmt or score_format(output)
    if resume and (output is None or fmt is not ScoreFormat.jsonl):
        raise GptlossError("--resume needs --output FILE with -f jsonl (a .jsonl file)")
    items = read_inputs(paths, encoding, errors, dataset)
    loaded = load(model, device, dtype, trust_remote_code)  # first: it overlaps tokenizer parsing with torch's import
    documents = documents_for(items, loaded, dataset, bos)
    from .api import ScoreRun
    from .engine import WindowSettings
    from .render import score_table, to_json

    settings = WindowSettings(max_length=max_length, stride=stride, bos=bos, batch_size=batch_size)
    run = ScoreRun(loaded, documents, settings)
    inputs: dict[str, Any] = {"files": [d.source for d in documents]} if dataset is None else dataset.describe()
    inputs["sha256"] = documents_digest(documents)  # --resume refuses a file made from other documents
    if run.tokens_to_score() == 0:
        raise nothing_to_score(documents, dataset)
    if fmt is ScoreFormat.jsonl:
        from .runfile import run_jsonl

        result = run_jsonl(run, output, resume, inputs, bootstrap, seed)
    else:
        with progress("scoring", len(documents)) as bar:
            bar.total(run.tokens_to_score())
            scores = [bar.document(s) for s in run.scores(bar.advance, keep_losses=False)]
        result = replace(run.result(scores, bootstrap, seed), inputs=None if dataset is None else inputs)
    from .sources import warn_unscored

    warn_unscored(documents, [d.totals for d in result.documents])
    if fmt is ScoreFormat.json:
        emit(to_json(result.to_dict()), output)
    elif fmt is ScoreFormat.table:
        emit(score_table(result), output)
    elif output is not None:  # the lines went to the file: the table to the terminal
        emit(score_table(result), None)


app.command()(handles_errors(tokens))
app.command()(handles_errors(compare))
app.command()(handles_errors(explain))


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
