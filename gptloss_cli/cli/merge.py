"""`gptloss merge`: the run files of one job's shards joined into the run a single process would have written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..files import Outputs
from .console import emit
from .options import OutputOpt, ScoreFormat, format_option

FilesArg = Annotated[
    list[Path], typer.Argument(help="The shards' run files (score --shard I/N -o FILE.jsonl), in any order.")
]
MergeFormatOpt = Annotated[
    Optional[ScoreFormat],  # noqa: UP045
    format_option(
        "jsonl: the run file one process would have written; json: score's JSON; table. "
        "Default: from the --output suffix (.json, .jsonl), else jsonl.",
    ),
]


def merge(files: FilesArg, fmt: MergeFormatOpt = None, output: OutputOpt = None) -> None:
    """Join the run files of one job's shards (score --shard I/N) into one run: every document's line and the
    totals, exactly as a single run writes them.

    The files must be one job's (same model, settings, protocol and input) and hold every shard once, each
    finished; what is missing or does not belong is named.
    """
    suffix = "" if output is None else output.suffix.lower()
    fmt = fmt or {".json": ScoreFormat.json, ".jsonl": ScoreFormat.jsonl}.get(suffix, ScoreFormat.jsonl)
    if fmt is ScoreFormat.table:
        raise UsageError("merge writes jsonl or json; score the files' documents again for a table")
    from ..render.format import json_line, to_json
    from ..tasks.merge import merge_runs

    with Outputs(("--output", output)) as outputs:
        outputs.take([str(f) for f in files])
        merged = merge_runs(files)
        total = merged.total.totals
        summary = f"{merged.total.documents} documents, {total.tokens_scored:,} tokens"
        if total.perplexity is not None:
            summary += f", perplexity {total.perplexity:.4g}"
        if fmt is ScoreFormat.json:
            emit(to_json(merged.to_dict()), output, summary)
        else:
            emit("".join(json_line(x) for x in merged.run_lines()), output, summary)
