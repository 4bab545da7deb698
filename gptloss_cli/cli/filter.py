"""`gptloss filter`: the rows of an annotated corpus whose score lies between two thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..files import Outputs
from ..inputs.corpus import OnBadLine
from . import console
from .console import emit, note
from .options import OutdirOpt

THRESHOLDS_PANEL = "Thresholds"


def filter(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="ANNOTATED...",
            help="Annotated Parquet (.parquet) or JSON Lines (.jsonl, .jsonl.gz) files, folders of them "
            "(recursively) or glob patterns.",
            show_default=False,
        ),
    ],
    output: OutdirOpt,
    column: Annotated[
        str, typer.Option(help="The numeric column compared with the thresholds.", rich_help_panel=THRESHOLDS_PANEL)
    ] = "gptloss_perplexity",
    keep: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            metavar="LO:HI",
            help="Keep the rows between these two quantiles of the column across every input file, e.g. "
            "0.25:0.75 (numpy's linear quantiles of the rows that have a value).",
            rich_help_panel=THRESHOLDS_PANEL,
            show_default=False,
        ),
    ] = None,
    minimum: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--min", help="Keep the rows whose value is at least this.", rich_help_panel=THRESHOLDS_PANEL),
    ] = None,
    maximum: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--max", help="Keep the rows whose value is at most this.", rich_help_panel=THRESHOLDS_PANEL),
    ] = None,
    on_bad_line: Annotated[
        OnBadLine, typer.Option(help="A malformed JSON Lines row: stop (fail) or leave it out and count.")
    ] = OnBadLine.fail,
    report: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(dir_okay=False, help="Also write the summary as JSON to this file."),
    ] = None,
) -> None:
    """Keep the rows of an annotated corpus whose score lies between two thresholds: the pruning step after
    gptloss annotate.

    The thresholds are two quantiles of --column across every input file (--keep 0.25:0.75 keeps the middle
    half of the corpus), or values given with --min and/or --max; both ends are kept. A row whose value is null
    or not a number is dropped and counted.

    Every input gives one output of the same format at the same path below OUTDIR, holding its rows that are
    kept, in order, with every column unchanged; each output appears only when whole. The quantiles are taken
    in a first pass that reads only the column; the rows are then read and written a chunk at a time.
    """
    from ..inputs.corpus import check_outdir, corpus_files
    from ..render.filter import filter_table
    from ..render.format import to_json
    from ..tasks.filter import Cut, filter_corpus, parse_keep

    cut = Cut(parse_keep(keep) if keep is not None else None, minimum, maximum)
    files = corpus_files(inputs)
    check_outdir(output, inputs, files)
    with Outputs(("--output", output / "gptloss-filter"), ("--report", report)) as outputs:
        outputs.take([str(f.path) for f in files])
        result = filter_corpus(files, output, cut, column, on_bad_line)
        if report is not None:
            emit(to_json(result.to_dict()), report, "the summary")
        emit(filter_table(result), None)
    bad = [f for f in result.files if f.bad_lines]
    if bad:
        console.warn(f"left out {sum(f.bad_lines for f in bad)} malformed line(s); the first: {bad[0].first_bad_line}")
    note(f"wrote {len(result.files)} file(s) to {output}")
