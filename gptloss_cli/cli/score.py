"""`gptloss score`: perplexity, bits per byte and friends for each file or record, and in total."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.distributed import Shard
from ..core.plan import WindowSettings
from ..core.totals import Bootstrap
from ..errors import GptlossError, UsageError
from ..files import Outputs
from ..inputs.document import documents_digest
from ..inputs.read import ReadSettings
from ..models.spec import ModelRequest
from .analysis import ANALYSES, AnalysisSettings
from .console import emit, progress, wrote
from .inputs import INPUTS
from .options import (
    EVERY_WINDOW,
    PLACED_MODEL,
    OptionGroup,
    OutputOpt,
    ScoreFormat,
    bootstrap_group,
    format_option,
    grouped,
)
from .prepare import prepare, warn_all

ScoreFormatOpt = Annotated[
    Optional[ScoreFormat],  # noqa: UP045
    format_option(
        "table for people; json, or jsonl (a line per document as it is done) for programs. "
        "Default: from the --output suffix (.json, .jsonl), else table.",
    ),
]
RUN_FILE = OptionGroup(
    {
        "resume": Annotated[
            bool, typer.Option(help="Carry on the run in --output (jsonl): skip the documents it already holds.")
        ],
        "shard": Annotated[
            Optional[str],  # noqa: UP045
            typer.Option(
                "--shard",
                metavar="I/N",
                help="Score only the I-th of N deterministic shares of the documents (0 <= I < N) into a run file "
                "(-o FILE.jsonl), for jobs that share no process group (a SLURM array); gptloss merge joins them.",
            ),
        ],
    },
    lambda resume, shard: (resume, None if shard is None else Shard.parse(shard)),
    {"resume": False, "shard": None},
)


def score_format(output: Path | None) -> ScoreFormat:
    """The format an --output file's name asks for: .jsonl or .json, else a table."""
    suffix = "" if output is None else output.suffix.lower()
    return {".jsonl": ScoreFormat.jsonl, ".json": ScoreFormat.json}.get(suffix, ScoreFormat.table)


@grouped(
    read_settings=INPUTS,
    model=PLACED_MODEL,
    windows=EVERY_WINDOW,
    analyses=ANALYSES,
    bootstrap=bootstrap_group("the corpus PPL"),
    run_file=RUN_FILE,
)
def score(
    fmt: ScoreFormatOpt = None,
    output: OutputOpt = None,
    *,
    read_settings: ReadSettings,
    model: ModelRequest,
    windows: tuple[WindowSettings, ...],
    analyses: AnalysisSettings,
    bootstrap: Bootstrap | None,
    run_file: tuple[bool, Shard | None],
) -> None:
    """Perplexity, bits per byte and friends for each file (or dataset record) and in total.

    Long texts are scored in windows of --max-length tokens that advance by --stride; every token is scored once.

    With -f jsonl (the default for an --output ending in .jsonl) a line per document is written as soon as it
    is done, and --resume carries on a stopped run.

    --protocol reproduces another tool's number (and every result says which protocol made it); --protocol all
    scores the text under each preset and shows side by side why their numbers differ.
    """
    fmt = fmt or score_format(output)
    check_combination(fmt, output, run_file, analyses, windows, bootstrap)
    with Outputs(("--output", output)) as outputs:
        if analyses.context_lengths:
            lengths = analyses.context_lengths
            context_curve_command(read_settings, model, windows[0], lengths, fmt is ScoreFormat.json, output, outputs)
        elif len(windows) > 1:
            compare_protocols(read_settings, model, windows, fmt is ScoreFormat.json, output, outputs)
        else:
            score_run(fmt, output, read_settings, model, windows[0], analyses, bootstrap, run_file, outputs)


def score_run(
    fmt: ScoreFormat,
    output: Path | None,
    read_settings: ReadSettings,
    model: ModelRequest,
    window_settings: WindowSettings,
    analyses: AnalysisSettings,
    bootstrap: Bootstrap | None,
    run_file: tuple[bool, Shard | None],
    outputs: Outputs,
) -> None:
    """One scoring run: a table, JSON, or a run file written as documents finish."""
    resume, share = run_file
    [loaded], documents, world = prepare(read_settings, [model], window_settings.bos, outputs)
    from rich.console import Group

    from ..render.analyses import analyses_view
    from ..render.format import to_json
    from ..render.score import score_table
    from ..tasks.analyses import detection_warnings
    from ..tasks.documents import unscored
    from ..tasks.runfile import run_jsonl
    from ..tasks.score import ScoreRun

    run = ScoreRun(loaded, documents, window_settings, world, share, analyses.analyses)
    run.require_tokens(read_settings.dataset)
    described = {**read_settings.describe(documents), "sha256": documents_digest(documents)}  # --resume checks it
    with progress("scoring") as bar:
        if fmt is ScoreFormat.jsonl:
            result = run_jsonl(run, output or sys.stdout, resume, described, bootstrap, bar)
        else:
            result = run.run(bar, bootstrap, None if read_settings.dataset is None else described)
    warn_all(unscored([documents[d.index] for d in result.documents], [d.totals for d in result.documents]))
    warn_all(detection_warnings(result.corpus.detection))
    if fmt is ScoreFormat.json:
        emit(to_json(result.to_dict()), output)
    elif fmt is ScoreFormat.table:
        emit(Group(score_table(result), *analyses_view(result)), output)
    elif output is not None:  # the lines went to the file: the table to the terminal
        emit(Group(score_table(result), *analyses_view(result)), None)
        wrote(output, f"{len(result.documents)} documents")


def check_combination(
    fmt: ScoreFormat,
    output: Path | None,
    run_file: tuple[bool, Shard | None],
    analyses: AnalysisSettings,
    windows: tuple[WindowSettings, ...],
    bootstrap: Bootstrap | None,
) -> None:
    """One line for options that do not go together, before anything is read or loaded."""
    resume, share = run_file
    if resume and (output is None or fmt is not ScoreFormat.jsonl):
        raise UsageError("--resume needs --output FILE with -f jsonl (a .jsonl file)")
    if share is not None and (output is None or fmt is not ScoreFormat.jsonl):
        raise UsageError("--shard needs --output FILE with -f jsonl (a .jsonl run file, for gptloss merge)")
    asked = analyses.analyses.to_dict() is not None
    if (analyses.context_lengths or len(windows) > 1) and (asked or bootstrap is not None):
        raise UsageError(
            "--by-position, --membership and --bootstrap go with one scoring run, not --context-lengths or "
            "--protocol all"
        )
    if analyses.context_lengths:
        if fmt is ScoreFormat.jsonl or share is not None or len(windows) > 1:
            raise UsageError("--context-lengths gives one table (or -f json): no run file, shard or --protocol")
        if windows[0].max_length is not None or windows[0].stride is not None:
            raise UsageError("--context-lengths sets the windows itself: drop --max-length and --stride")
    if len(windows) > 1:
        if fmt is ScoreFormat.jsonl:
            raise UsageError("--protocol all gives one table (or -f json), not a run file")
        if bootstrap is not None:
            raise UsageError("--bootstrap gives one protocol's interval: use it with one --protocol, not all")


def compare_protocols(
    read_settings: ReadSettings,
    model: ModelRequest,
    presets: tuple[WindowSettings, ...],
    json: bool,
    output: Path | None,
    outputs: Outputs,
) -> None:
    """The same model and text under each preset: the protocols' totals side by side."""
    [loaded], documents, world = prepare(read_settings, [model], presets[0].bos, outputs)
    from ..render.format import to_json
    from ..render.protocols import protocols_json, protocols_table
    from ..tasks.protocol_runs import score_presets

    with progress("scoring") as bar:
        runs = score_presets(loaded, documents, presets, bar, world)
    if all(r.result is None for r in runs):
        reasons = "; ".join(f"{r.preset.name}: {r.error}" for r in runs)
        raise GptlossError(f"nothing was scored under any protocol ({reasons})")
    emit(to_json(protocols_json(loaded.info, runs)) if json else protocols_table(loaded.info, runs), output)


def context_curve_command(
    read_settings: ReadSettings,
    model: ModelRequest,
    window_settings: WindowSettings,
    lengths: tuple[int, ...],
    json: bool,
    output: Path | None,
    outputs: Outputs,
) -> None:
    """The same tokens scored with windows of each length: PPL as the context grows."""
    [loaded], documents, world = prepare(read_settings, [model], window_settings.bos, outputs)
    from ..render.context_curve import curve_table
    from ..render.format import to_json
    from ..tasks.context_curve import context_curve

    with progress("scoring") as bar:
        curve = context_curve(loaded, documents, lengths=lengths, settings=window_settings, tracker=bar, world=world)
    emit(to_json(curve.to_dict()) if json else curve_table(curve), output)
