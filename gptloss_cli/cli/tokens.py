"""`gptloss tokens`: per-token (or per-word) records as JSON, JSONL, CSV, a table, a heatmap or an HTML report."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Optional

import typer

from ..core.plan import WindowSettings
from ..files import Outputs, write_atomic
from ..inputs.read import ReadSettings
from ..models.spec import ModelRequest
from .console import Bar, color_terminal, emit, open_output, progress, wrote
from .inputs import INPUTS
from .options import PLACED_MODEL, WINDOW, HtmlOpt, OutputOpt, TokenFormat, TopKOpt, Unit, format_option, grouped
from .prepare import prepare, warn_all

if TYPE_CHECKING:
    from ..core.totals import Totals
    from ..tasks.tokens import AnyRecord, Chunk, TokenRun

TokenFormatOpt = Annotated[
    Optional[TokenFormat],  # noqa: UP045
    format_option(
        "table or heatmap for people; json, jsonl (streamed, one record per line) or csv for programs. "
        "Default: table, or nothing on stdout when --html is given.",
    ),
]
UnitOpt = Annotated[Unit, typer.Option(help="token, or word: whitespace-separated words, NLL summed over tokens.")]


@dataclass(frozen=True)
class TokensOptions:
    """What one tokens command asked for besides the model: what to read, the windows, the records, and where
    and how to write them."""

    read_settings: ReadSettings
    window_settings: WindowSettings
    fmt: TokenFormat | None = None
    top_k: int = 5
    unit: Unit = Unit.token
    output: Path | None = None
    html: Path | None = None


@grouped(read_settings=INPUTS, model=PLACED_MODEL, window_settings=WINDOW)
def tokens(
    fmt: TokenFormatOpt = None,
    top_k: TopKOpt = 5,
    unit: UnitOpt = Unit.token,
    html: HtmlOpt = None,
    output: OutputOpt = None,
    *,
    read_settings: ReadSettings,
    model: ModelRequest,
    window_settings: WindowSettings,
) -> None:
    """Each token's log-probability, rank, entropy and the model's top choices; or each word's summed NLL.

    Records give character offsets into the text (text\\[start:end] == token). jsonl and csv are written as the
    windows are scored, so memory stays flat on long texts.
    """
    options = TokensOptions(read_settings, window_settings, fmt, top_k, unit, output, html)
    with Outputs(("--output", output), ("--html", html)) as outputs:
        tokens_run(model, options=options, outputs=outputs)


def tokens_run(model: ModelRequest, *, options: TokensOptions, outputs: Outputs) -> None:
    """Score the records and write them: streamed (jsonl, csv), or collected for a table, JSON or HTML."""
    read_settings, html, output = options.read_settings, options.html, options.output
    [loaded], documents, world = prepare(read_settings, [model], options.window_settings.bos, outputs)
    from ..render.html import render_report
    from ..render.tokens import tokens_json, tokens_view
    from ..tasks.documents import unscored
    from ..tasks.tokens import TokenRun

    dataset = read_settings.dataset
    run = TokenRun(
        loaded,
        documents,
        options.window_settings,
        top_k=options.top_k,
        unit=options.unit.value,
        described=None if dataset is None else dataset.describe(),
        world=world,
    )
    run.require_tokens(dataset)
    fmt = options.fmt or (TokenFormat.table if html is None or output is not None else None)
    keep = html is not None or fmt in (TokenFormat.table, TokenFormat.heatmap, TokenFormat.json)
    collected: list[list[AnyRecord]] = [[] for _ in documents]
    totals: list[Totals | None] = [None] * len(documents)
    with progress("scoring") as bar:
        bar.start(run.tokens_to_score(), len(documents))
        if fmt in (TokenFormat.jsonl, TokenFormat.csv):
            with open_output(output) as out:
                _stream(run, fmt, out, collected if keep else None, totals, bar)
        else:
            for chunk in run.chunks(bar.advance):
                collected[chunk.doc].extend(chunk.records)
                _done(chunk, totals, bar)
    warn_all(unscored(documents, totals))
    if fmt is TokenFormat.json:
        emit(tokens_json(run.header(), documents, collected, totals, run.unit), output)
    elif fmt in (TokenFormat.table, TokenFormat.heatmap):
        color = output is None and color_terminal()
        emit(tokens_view(documents, collected, run.unit, fmt is TokenFormat.heatmap, color), output)
    if html is not None and world.leader:
        pages = [
            (d.source, d.text, r, t) for d, r, t in zip(documents, collected, totals, strict=True) if t is not None
        ]
        write_atomic(html, render_report(run.header(), pages))
        wrote(html)


def _done(chunk: Chunk, totals: list[Totals | None], bar: Bar) -> None:
    """A document's totals kept, and the bar told, when its last chunk comes."""
    if chunk.done:
        totals[chunk.doc] = chunk.totals
        bar.document()


def _stream(
    run: TokenRun,
    fmt: TokenFormat,
    out: IO[str],
    keep: list[list[AnyRecord]] | None,
    totals: list[Totals | None],
    bar: Bar,
) -> None:
    """Records written as their windows are scored: CSV rows, or a header line and a line per record."""
    from ..render.format import json_line
    from ..render.tokens import csv_header, csv_rows

    writer = None
    if fmt is TokenFormat.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(csv_header(run.unit))
    else:
        out.write(json_line(run.header()))
    for chunk in run.chunks(bar.advance):
        source = run.documents[chunk.doc].source
        if writer is not None:
            writer.writerows(csv_rows(source, chunk.records, run.unit))
        else:
            out.write("".join(json_line({"source": source, **r.to_dict()}) for r in chunk.records))
        if keep is not None:
            keep[chunk.doc].extend(chunk.records)
        _done(chunk, totals, bar)
