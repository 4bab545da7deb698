"""`gptloss annotate`: score columns on every row of a corpus of Parquet or JSON Lines shards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..core.distributed import Shard
from ..core.plan import WindowSettings
from ..errors import GptlossError, UsageError
from ..files import Outputs
from ..inputs.corpus import OnBadLine
from ..models.spec import ModelRequest
from . import console
from .console import emit, note
from .options import PLACED_MODEL, WINDOW, OptionGroup, OutdirOpt, grouped, panel_option, text_option
from .prepare import join

ROWS_PANEL = "Rows"
CORPUS_PANEL = "Corpus"


class EngineName(str, Enum):
    local = "local"
    ray = "ray"


def _rows(
    text_column: str | None,
    prompt_column: str | None,
    completion_column: str | None,
    messages_column: str | None,
    span_column: str | None,
    score_roles: str | None,
    chat_template: Path | None,
) -> Any:
    from ..tasks.rows import row_options

    roles = None if score_roles is None else tuple(r.strip() for r in score_roles.split(",") if r.strip())
    return row_options(
        text_column, prompt_column, completion_column, messages_column, span_column, roles, chat_template
    )


ROWS = OptionGroup(
    {
        "text_column": Annotated[
            Optional[str],  # noqa: UP045
            text_option("Column with the text to score (default: text).", ROWS_PANEL),
        ],
        "prompt_column": Annotated[
            Optional[str],  # noqa: UP045
            text_option("Column with a prompt: context only (needs --completion-column).", ROWS_PANEL),
        ],
        "completion_column": Annotated[
            Optional[str],  # noqa: UP045
            text_option("Column with the completion: only its tokens are scored.", ROWS_PANEL),
        ],
        "messages_column": Annotated[
            Optional[str],  # noqa: UP045
            text_option("Column with a chat ([{role, content}, ...]), rendered with the model's template.", ROWS_PANEL),
        ],
        "span_column": Annotated[
            Optional[str],  # noqa: UP045
            text_option(
                "Column with \\[\\[start, end], ...] character spans: only their tokens are scored.", ROWS_PANEL
            ),
        ],
        "score_roles": Annotated[
            Optional[str],  # noqa: UP045
            text_option("Comma-separated roles whose turns are scored (default: assistant).", ROWS_PANEL),
        ],
        "chat_template": Annotated[
            Optional[Path],  # noqa: UP045
            panel_option(
                dir_okay=False, panel=ROWS_PANEL, help="A Jinja chat template file, for models that ship none."
            ),
        ],
    },
    _rows,
)


def _corpus(
    chunk_rows: int, on_bad_line: OnBadLine, attributes: bool, id_column: str, resume: bool, shard: str | None
) -> Any:
    from ..tasks.annotate import AnnotateSettings

    return AnnotateSettings(
        chunk_rows,
        on_bad_line,
        id_column if attributes else None,
        resume,
        None if shard is None else Shard.parse(shard),
    )


CORPUS = OptionGroup(
    {
        "chunk_rows": Annotated[
            int,
            panel_option(
                min=1,
                max=10_000,
                panel=CORPUS_PANEL,
                help="Rows read, scored and written at a time: memory holds one chunk, and a stopped run loses at "
                "most one.",
            ),
        ],
        "on_bad_line": Annotated[
            OnBadLine,
            panel_option(panel=CORPUS_PANEL, help="A malformed JSON Lines row: stop (fail) or leave it out and count."),
        ],
        "attributes": Annotated[
            bool,
            panel_option(
                panel=CORPUS_PANEL,
                help="Write attribute files (dolma style): the --id-column and the score columns only, row-aligned.",
            ),
        ],
        "id_column": Annotated[str, panel_option(panel=CORPUS_PANEL, help="The id column of --attributes files.")],
        "resume": Annotated[
            bool,
            panel_option(
                panel=CORPUS_PANEL,
                help="Carry on a stopped run into the same OUTDIR: finished files are kept, an unfinished one goes on "
                "from its last finished chunk.",
            ),
        ],
        "shard": Annotated[
            Optional[str],  # noqa: UP045
            panel_option(
                "--shard",
                metavar="I/N",
                panel=CORPUS_PANEL,
                help="Annotate only the I-th of N shares of the files (whole files, balanced by size), for jobs "
                "that share no process group (a SLURM array); all write into the same OUTDIR.",
            ),
        ],
    },
    _corpus,
    {"chunk_rows": 1_000, "on_bad_line": OnBadLine.fail, "attributes": False, "id_column": "id", "resume": False},
)


def _engine(engine: EngineName, address: str | None, workers: int) -> tuple[EngineName, str | None, int]:
    if engine is EngineName.local and (address is not None or workers != 1):
        raise UsageError("--address and --workers go with --engine ray")
    return engine, address, workers


ENGINE = OptionGroup(
    {
        "engine": Annotated[
            EngineName,
            panel_option(
                panel=CORPUS_PANEL,
                help="local: this process (under torchrun, its ranks share each chunk); ray: --workers actors on a "
                "Ray cluster, each with the model loaded once (needs pip install 'gptloss\\[ray]').",
            ),
        ],
        "address": Annotated[
            Optional[str],  # noqa: UP045
            text_option(
                "The Ray cluster to join (default: RAY_ADDRESS's, else a local one started for the run).", CORPUS_PANEL
            ),
        ],
        "workers": Annotated[
            int, panel_option(min=1, panel=CORPUS_PANEL, help="Ray actors, each scoring chunks with its own model.")
        ],
    },
    _engine,
    {"engine": EngineName.local, "workers": 1},
)


@grouped(model=PLACED_MODEL, windows=WINDOW, rows=ROWS, corpus=CORPUS, engine=ENGINE)
def annotate(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT",
            help="Parquet (.parquet) or JSON Lines (.jsonl, .jsonl.gz) files, folders of them (recursively) or glob "
            "patterns.",
            show_default=False,
        ),
    ],
    output: OutdirOpt,
    membership: Annotated[
        bool, typer.Option(help="Also Min-K% Prob, Min-K%++ and zlib ratio columns (membership scores).")
    ] = False,
    min_k: Annotated[float, typer.Option(help="k of Min-K% and Min-K%++: the fraction of lowest tokens.")] = 0.2,
    report: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(dir_okay=False, help="Also write the summary as JSON to this file."),
    ] = None,
    *,
    model: ModelRequest,
    windows: WindowSettings,
    rows: Any,
    corpus: Any,
    engine: tuple[EngineName, str | None, int],
) -> None:
    """Add score columns to every row of a corpus of Parquet or JSON Lines shards: each row is a document of
    score, and its tokens, NLL sum, mean NLL, perplexity and bits per byte go into gptloss_* columns.

    Every input file gives one output of the same format at the same path below OUTDIR, with every row in
    order and every column unchanged; a row that cannot be scored keeps its place with null scores and
    gptloss_error saying why. Rows are read, scored and written a chunk at a time (memory stays flat), each
    output appears only when whole, and --resume carries on a stopped run from its last finished chunk.

    Then gptloss filter keeps the rows whose score lies between two quantiles.
    """
    from ..tasks.analyses import Analyses

    if not 0 < min_k <= 1:
        raise UsageError(f"--min-k {min_k}: give a fraction in (0, 1], e.g. 0.2")
    engine_name, address, workers = engine
    launched = console.world()
    if corpus.shard is not None and launched.parallel:
        raise UsageError("--shard is for jobs without a process group: run it without torchrun")
    if engine_name is EngineName.ray and launched.parallel:
        raise UsageError("--engine ray spreads the work itself: run it without torchrun")
    analyses = Analyses(None, min_k if membership else None)
    run_annotation(inputs, output, report, model, windows, rows, corpus, analyses, engine)


def run_annotation(
    inputs: list[str],
    output: Path,
    report: Path | None,
    model: ModelRequest,
    windows: WindowSettings,
    rows: Any,
    corpus: Any,
    analyses: Any,
    engine: tuple[EngineName, str | None, int],
) -> None:
    from ..inputs.corpus import check_outdir, corpus_files
    from ..tasks.annotate import STATE, Annotation
    from ..tasks.rows import RowScorer

    world = join(console.world(), model)
    files = corpus_files(inputs)
    error: Exception | None = None
    share = corpus.shard  # shards of one job write into the same folder at once, each to its own files
    claim = output / STATE / ("run" if share is None else f"run-{share.index}-of-{share.count}")
    outputs = Outputs(("--output", claim), ("--report", report))
    try:
        if world.leader:
            check_outdir(output, inputs, files, [STATE])
            outputs.take([str(f.path) for f in files])
    except GptlossError as exc:
        error = exc
    world.agree(error)
    with outputs, ExitStack() as stack:
        engine_name, address, workers = engine
        loaded = console.load(model)  # with Ray, this process reads the tokenizer's settings; the actors score
        scorer = RowScorer(loaded, rows, windows, analyses, world)
        runner = None
        if engine_name is EngineName.ray:
            from ..ray import RayEngine

            expected = scorer.fingerprint()
            runner = stack.enter_context(RayEngine(model, rows, windows, analyses, address, workers, expected))
        annotation = Annotation(scorer, files, output, corpus, runner)
        with watch() as watcher:
            result = annotation.run(watcher)
        if not world.leader:
            return
        from ..render.annotate import annotate_table
        from ..render.format import to_json

        if report is not None:
            emit(to_json(result.to_dict()), report, "the summary")
        emit(annotate_table(result), None)
        if any(f.bad_lines for f in result.files):
            first = next(f.first_bad_line for f in result.files if f.first_bad_line)
            console.warn(f"left out {sum(f.bad_lines for f in result.files)} malformed line(s); the first: {first}")
        note(f"wrote {len(result.files)} file(s) to {output}")


@contextmanager
def watch() -> Iterator[Any]:
    """A progress display on stderr (a terminal's, rank 0's): files, rows, tokens, tok/s and time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    err = console.stderr()
    if not err.is_terminal or not console.leader():
        from ..tasks.annotate import SILENT

        yield SILENT
        return
    columns = (
        TextColumn("annotating {task.fields[files]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows {task.fields[tokens]:,} tokens {task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        yield _Watch(bar)


class _Watch:
    def __init__(self, bar: Any) -> None:
        import time

        self.bar, self.clock, self.began = bar, time.perf_counter, time.perf_counter()
        self.task = bar.add_task("annotate", total=None, files="", tokens=0, rate="")
        self.files = self.done = self.tokens = 0

    def start(self, files: int, rows: int) -> None:
        self.files = files
        self.bar.update(self.task, total=rows or None, files=f"file 0/{files}")

    def advance(self, rows: int, tokens: int) -> None:
        self.tokens += tokens
        elapsed = self.clock() - self.began
        rate = f"{self.tokens / elapsed:,.0f} tok/s" if elapsed > 0 else ""
        self.bar.update(self.task, advance=rows, tokens=self.tokens, rate=rate)

    def file(self) -> None:
        self.done += 1
        self.bar.update(self.task, files=f"file {self.done}/{self.files}")
