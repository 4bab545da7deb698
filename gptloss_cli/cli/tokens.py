"""`gptloss tokens`: per-token (or per-word) records as JSON, JSONL, CSV, a table, a heatmap or an HTML report."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Optional

import typer

from ..core.plan import WindowSettings
from ..files import Outputs, write_atomic
from ..inputs.read import InputSettings
from ..models.spec import ModelRequest
from .console import Bar, color_terminal, emit, open_output, progress, wrote
from .inputs import INPUTS
from .options import PLACED_MODEL, WINDOW, HtmlOpt, OutputOpt, TokenFormat, TopKOpt, Unit, format_option, grouped
from .prepare import prepare, warn_all

if TYPE_CHECKING:
    from ..tasks.tokens import AnyRecord, TokenRun

TokenFormatOpt = Annotated[
    Optional[TokenFormat],  # noqa: UP045
    format_option(
        "table or heatmap for people; json, jsonl (streamed, one record per line) or csv for programs. "
        "Default: table, or nothing on stdout when --html is given.",
    ),
]
UnitOpt = Annotated[Unit, typer.Option(help="token, or word: whitespace-separated words, NLL summed over tokens.")]


@grouped(inputs=INPUTS, model=PLACED_MODEL, window=WINDOW)
def tokens(
    fmt: TokenFormatOpt = None,
    top_k: TopKOpt = 5,
    unit: UnitOpt = Unit.token,
    html: HtmlOpt = None,
    output: OutputOpt = None,
    *,
    inputs: InputSettings,
    model: ModelRequest,
    window: WindowSettings,
) -> None:
    """Each token's log-probability, rank, entropy and the model's top choices; or each word's summed NLL.

    Records give character offsets into the text (text\\[start:end] == token). jsonl and csv are written as the
    windows are scored, so memory stays flat on long texts.
    """
    with Outputs(("--output", output), ("--html", html)) as outputs:
        tokens_run(fmt, top_k, unit, html, output, inputs, model, window, outputs)


def tokens_run(
    fmt: TokenFormat | None,
    top_k: int,
    unit: Unit,
    html: Path | None,
    output: Path | None,
    inputs: InputSettings,
    model: ModelRequest,
    window: WindowSettings,
    outputs: Outputs,
) -> None:
    """Score the records and write them: streamed (jsonl, csv), or collected for a table, JSON or HTML."""
    [loaded], documents, world = prepare(inputs, [model], window.bos, outputs)
    from ..render.html import render_report
    from ..render.tokens import tokens_json, tokens_view
    from ..tasks.documents import unscored
    from ..tasks.tokens import TokenRun

    described = None if inputs.dataset is None else inputs.dataset.describe()
    run = TokenRun(loaded, documents, window, top_k=top_k, unit=unit.value, inputs=described, world=world)
    run.require_tokens(inputs.dataset)
    fmt = fmt or (TokenFormat.table if html is None or output is not None else None)
    keep = html is not None or fmt in (TokenFormat.table, TokenFormat.heatmap, TokenFormat.json)
    collected: list[list[AnyRecord]] = [[] for _ in documents]
    with progress("scoring") as bar:
        bar.start(run.tokens_to_score(), len(documents))
        if fmt in (TokenFormat.jsonl, TokenFormat.csv):
            with open_output(output) as out:
                _stream(run, fmt, out, collected if keep else None, bar)
        else:
            for doc, records in run.chunks(bar.advance, bar.document):
                collected[doc].extend(records)
    warn_all(unscored(documents, run.totals))
    if fmt is TokenFormat.json:
        emit(tokens_json(run.header(), documents, collected, run.totals, run.unit), output)
    elif fmt in (TokenFormat.table, TokenFormat.heatmap):
        color = output is None and color_terminal()
        emit(tokens_view(documents, collected, run.unit, fmt is TokenFormat.heatmap, color), output)
    if html is not None and world.leader:
        pages = [
            (d.source, d.text, r, t) for d, r, t in zip(documents, collected, run.totals, strict=True) if t is not None
        ]
        write_atomic(html, render_report(run.header(), pages))
        wrote(html)


def _stream(run: TokenRun, fmt: TokenFormat, out: IO[str], keep: list[list[AnyRecord]] | None, bar: Bar) -> None:
    """Records written as their windows are scored: CSV rows, or a header line and a line per record."""
    from ..render.format import json_line
    from ..render.tokens import csv_header, csv_rows

    writer = None
    if fmt is TokenFormat.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(csv_header(run.unit))
    else:
        out.write(json_line(run.header()))
    for doc, records in run.chunks(bar.advance, bar.document):
        source = run.documents[doc].source
        if writer is not None:
            writer.writerows(csv_rows(source, records, run.unit))
        else:
            out.write("".join(json_line({"source": source, **r.to_dict()}) for r in records))
        if keep is not None:
            keep[doc].extend(records)
