"""`annotate`: a score column on every row of a corpus of shard files, chunk by chunk, resumable.

For each input file, one output of the same format at the same path below the output folder: every row, in
order, every column as it was, and the score columns after them (tasks.rows.RowScorer: each row is a
document of `score`, so its numbers are score's). Rows are read, scored and written a chunk at a time, so
memory does not grow with the corpus.

Resume: beside the outputs, in `.gptloss-annotate/`, each file being annotated has a folder holding a manifest
(what must not change: the model, the settings, the input file's size and time) and one file per finished
chunk, each written whole under its final name. A run that stops (a crash, kill -9) loses at most the chunk
it was scoring; --resume checks the manifest, skips the finished files and chunks, and gives the output an
uninterrupted run would have (a chunk is batched alone, so its rows' numbers are the same to the bit). A file
whose chunks are all done is assembled into its output (written to a temporary name, then renamed), then
marked done and its chunks removed.

Engines: this process (with torchrun, its ranks share each chunk's windows as `score` does; rank 0 writes),
`--shard I/N` (whole files dealt to N jobs with no process group), or Ray actors (gptloss_cli.ray), each of
which feeds `annotate` chunks through `Engine`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..core.distributed import Shard, share
from ..core.totals import Totals
from ..errors import GptlossError
from ..files import write_atomic
from ..inputs.corpus import (
    PARQUET,
    Chunk,
    CorpusFile,
    OnBadLine,
    ShardWriter,
    check_columns,
    column_of_file,
    read_back,
    read_chunks,
    with_columns,
)
from .rows import Columns, RowScorer, ScoredRows

ANNOTATE_SCHEMA = "gptloss.annotate-run/v1"
REPORT_SCHEMA = "gptloss.annotate/v1"
STATE = ".gptloss-annotate"  # the folder, inside the output folder, that holds unfinished work
CHUNK_ROWS = 1_000
MAX_CHUNK_ROWS = 10_000
QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)


class Engine(Protocol):
    """What scores a stream of chunks: each chunk's score columns, in the order the chunks came."""

    def __call__(
        self, chunks: Iterator[Chunk], progress: Callable[[int], None]
    ) -> Iterator[tuple[Chunk, ScoredRows]]: ...


def local_engine(scorer: RowScorer) -> Engine:
    """Chunks scored one after another by `scorer`, in this process (and its torchrun ranks)."""

    def run(chunks: Iterator[Chunk], progress: Callable[[int], None]) -> Iterator[tuple[Chunk, ScoredRows]]:
        for chunk in chunks:
            yield chunk, scorer.score(chunk.records(scorer.reads), chunk.where, progress)

    return run


@dataclass(frozen=True)
class AnnotateSettings:
    """How the corpus is read and written: rows per chunk, what a bad JSON line does, --attributes (the id
    column and the scores only), --resume, and --shard."""

    chunk_rows: int = CHUNK_ROWS
    on_bad_line: OnBadLine = OnBadLine.fail
    attributes: str | None = None  # the id column, when writing attribute files
    resume: bool = False
    shard: Shard | None = None

    def fingerprint(self) -> dict[str, Any]:
        return {"chunk_rows": self.chunk_rows, "on_bad_line": self.on_bad_line.value, "attributes": self.attributes}


class Watcher(Protocol):
    """Where annotate reports how far it is."""

    def start(self, files: int, rows: int) -> None:
        """The work ahead: so many files, holding about so many rows (0: not known)."""

    def advance(self, rows: int, tokens: int) -> None:
        """So many more rows written, so many more tokens scored."""

    def file(self) -> None:
        """One more file done."""


class Silent:
    """A Watcher that reports nothing."""

    def start(self, files: int, rows: int) -> None:
        pass

    def advance(self, rows: int, tokens: int) -> None:
        pass

    def file(self) -> None:
        pass


SILENT = Silent()


@dataclass
class FileSummary:
    """What one output holds: rows, rows with an error, bad lines left out, and the scored tokens' totals."""

    relative: str
    rows: int = 0
    errors: int = 0
    bad_lines: int = 0
    totals: list[Totals] = field(default_factory=list)
    resumed_chunks: int = 0
    skipped: bool = False  # done by an earlier run (--resume)
    first_bad_line: str | None = None

    def add(self, other: dict[str, Any]) -> None:
        self.rows += int(other["rows"])
        self.errors += int(other["errors"])
        self.bad_lines += int(other["bad_lines"])
        self.totals.append(Totals.from_dict(other["totals"]))
        self.first_bad_line = self.first_bad_line or other.get("first_bad_line")

    def to_dict(self) -> dict[str, Any]:
        total = Totals.combine(self.totals)
        return {
            "file": self.relative,
            "rows": self.rows,
            "errors": self.errors,
            "bad_lines": self.bad_lines,
            "tokens": total.tokens_scored,
            "nll_sum": total.nll_sum,
            "bytes": total.bytes,
            "words": total.words,
            "nll_sq_sum": total.nll_sq_sum,
            **({"first_bad_line": self.first_bad_line} if self.first_bad_line else {}),
        }


@dataclass(frozen=True)
class AnnotateResult:
    """A run's report: per file and in total, the perplexity quantiles across rows, and how long it took."""

    model: dict[str, Any]
    settings: dict[str, Any]
    files: list[FileSummary]
    quantiles: dict[str, float | None]
    wall_seconds: float
    outdir: str

    @property
    def total(self) -> Totals:
        return Totals.combine([t for f in self.files for t in f.totals])

    def to_dict(self) -> dict[str, Any]:
        total = self.total
        return {
            "schema": REPORT_SCHEMA,
            "model": self.model,
            "settings": self.settings,
            "output": self.outdir,
            "rows": sum(f.rows for f in self.files),
            "errors": sum(f.errors for f in self.files),
            "bad_lines": sum(f.bad_lines for f in self.files),
            "tokens": total.tokens_scored,
            "perplexity": total.perplexity,
            "bits_per_byte": total.bits_per_byte,
            "perplexity_quantiles": self.quantiles,
            "wall_seconds": self.wall_seconds,
            "tokens_per_second": total.tokens_scored / self.wall_seconds if self.wall_seconds > 0 else None,
            "files": [{**f.to_dict(), "resumed": f.skipped or f.resumed_chunks > 0} for f in self.files],
        }


def deal_files(files: Sequence[CorpusFile], shard: Shard | None) -> list[CorpusFile]:
    """The files this job annotates: all, or its shard's (whole files, dealt largest first by size to the share
    with the fewest bytes, in input order within a share)."""
    if shard is None:
        return list(files)
    order = sorted(range(len(files)), key=lambda i: -files[i].size)
    shares = share([files[i].size for i in order], shard.count)
    mine = {order[j] for j in shares[shard.index]}
    return [f for i, f in enumerate(files) if i in mine]


class Annotation:
    """One annotate run over `files` into `outdir` (see the module's docstring)."""

    def __init__(
        self,
        scorer: RowScorer,
        files: Sequence[CorpusFile],
        outdir: Path,
        settings: AnnotateSettings,
        engine: Engine | None = None,
    ) -> None:
        self.scorer = scorer
        self.files = list(files)
        self.outdir = outdir
        self.settings = settings
        self.engine = engine or local_engine(scorer)
        self.world = scorer.world
        self.fingerprint = {**scorer.fingerprint(), **settings.fingerprint()}

    def run(self, watcher: Watcher = SILENT) -> AnnotateResult:
        began = time.perf_counter()
        mine = deal_files(self.files, self.settings.shard)
        watcher.start(len(mine), sum(_row_estimate(f) for f in mine))
        summaries = [self._file(item, watcher) for item in mine]
        quantiles = self._quantiles(mine)
        wall = time.perf_counter() - began
        settings = {**{k: v for k, v in self.fingerprint.items() if not k.startswith("model ")}}
        if self.settings.shard is not None:
            settings["shard"] = self.settings.shard.to_dict()
        info = self.scorer.loaded.info.to_dict()
        return AnnotateResult(info, settings, summaries, quantiles, wall, str(self.outdir))

    # One file ---------------------------------------------------------------------------------------------

    def _paths(self, item: CorpusFile) -> tuple[Path, Path, Path]:
        """The output, the folder of its unfinished chunks, and its done mark."""
        output = self.outdir / item.relative
        state = self.outdir / STATE / item.relative
        return output, state.with_name(state.name + ".chunks"), state.with_name(state.name + ".done.json")

    def _file(self, item: CorpusFile, watcher: Watcher) -> FileSummary:
        output, chunks_dir, done_mark = self._paths(item)
        summary = FileSummary(item.relative)
        plan: dict[str, Any] = {"skip": False, "start": 0, "chunks": []}
        error: Exception | None = None
        if self.world.leader:
            try:
                plan = self._prepare(item, output, chunks_dir, done_mark)
            except GptlossError as exc:
                error = exc
        self.world.agree(error, named=False)
        plan = self.world.broadcast(plan)
        for done in plan["chunks"]:
            summary.add(done)
        summary.resumed_chunks = plan["start"]
        if plan["skip"]:
            summary.skipped = True
            watcher.advance(summary.rows, 0)
            watcher.file()
            return summary
        chunks = read_chunks(item, self.settings.chunk_rows, self.settings.on_bad_line, start=plan["start"])
        for chunk, scored in self.engine(self._checked(item, chunks), lambda n: watcher.advance(0, n)):
            summary.add(self._write_chunk(item, chunks_dir, chunk, scored))
            watcher.advance(len(chunk), 0)
        if self.world.leader:
            try:
                self._assemble(item, output, chunks_dir, done_mark)
            except GptlossError as exc:
                error = exc
        self.world.agree(error, named=False)
        watcher.file()
        return summary

    def _checked(self, item: CorpusFile, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        """The chunks, the first checked for the columns the run reads (and, for attribute files, the id)."""
        for chunk in chunks:
            if chunk.number == 0:
                check_columns(item, chunk, self.scorer.reads)
                if self.settings.attributes is not None:
                    check_columns(item, chunk, [self.settings.attributes])
                taken = [c for c in chunk.columns() if c in self.scorer.types()]
                if taken:
                    raise GptlossError(
                        f"{item.path}: already has a column {taken[0]!r} (annotated already?); "
                        "annotate the original files"
                    )
            yield chunk

    def _prepare(self, item: CorpusFile, output: Path, chunks_dir: Path, done_mark: Path) -> dict[str, Any]:
        """What this file needs (leader only): nothing (done), or its chunks from `start` on, with those
        already done. Without --resume, whatever an earlier run left for it is removed."""
        manifest = {"schema": ANNOTATE_SCHEMA, "fingerprint": self.fingerprint, "input": item.identity()}
        again = "start over without --resume"
        # temporary files a killed run left (this run holds the folder's lock: nobody else is writing them)
        stale = [
            *output.parent.glob(f".{output.name}.*.tmp"),
            *(chunks_dir.glob(".*.tmp") if chunks_dir.is_dir() else []),
        ]
        for leftover in stale:
            leftover.unlink(missing_ok=True)
        if not self.settings.resume:
            shutil.rmtree(chunks_dir, ignore_errors=True)
            done_mark.unlink(missing_ok=True)
        else:
            if done_mark.exists() and output.exists():
                found = _read_json(done_mark, again)
                self._check(found, manifest, done_mark, item)
                return {"skip": True, "start": 0, "chunks": found.get("chunks", [])}
            if (chunks_dir / "manifest.json").exists():
                self._check(_read_json(chunks_dir / "manifest.json", again), manifest, chunks_dir, item)
                done = []
                for number in range(10**9):
                    mark = chunks_dir / f"{number:06d}.json"
                    if not mark.exists():
                        break
                    done.append(_read_json(mark, again))
                return {"skip": False, "start": len(done), "chunks": done}
        done_mark.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(chunks_dir, ignore_errors=True)
        try:
            chunks_dir.mkdir(parents=True)
        except OSError as exc:
            raise GptlossError(f"{chunks_dir}: cannot write ({exc.strerror or exc})") from exc
        write_atomic(chunks_dir / "manifest.json", json.dumps(manifest, indent=1) + "\n")
        return {"skip": False, "start": 0, "chunks": []}

    def _check(self, found: dict[str, Any], expected: dict[str, Any], where: Path, item: CorpusFile) -> None:
        again = "start over without --resume or give another --output"
        if found.get("schema") != ANNOTATE_SCHEMA or not isinstance(found.get("fingerprint"), dict):
            raise GptlossError(f"{where}: not a gptloss annotate run; {again}")
        was_all, now_all = found["fingerprint"], expected["fingerprint"]
        for key in now_all:
            if was_all.get(key) != now_all[key]:
                raise GptlossError(
                    f"{self.outdir} was annotated with another {key} ({was_all.get(key)!r}, now {now_all[key]!r}); "
                    f"{again}"
                )
        if found.get("input") != expected["input"]:
            raise GptlossError(f"{item.path} changed since {self.outdir} was begun (size or time); {again}")

    def _write_chunk(self, item: CorpusFile, chunks_dir: Path, chunk: Chunk, scored: ScoredRows) -> dict[str, Any]:
        """Write a finished chunk (leader), and say what it holds (every rank)."""
        done = {
            "rows": len(chunk),
            "errors": scored.errors,
            "bad_lines": len(chunk.skipped),
            "totals": scored.total.to_dict(),
            **({"first_bad_line": chunk.skipped[0]} if chunk.skipped else {}),
        }
        error: Exception | None = None
        if self.world.leader:
            try:
                written = self._output_rows(chunk, scored.columns)
                suffix = ".parquet" if item.format == PARQUET else ".jsonl"
                with ShardWriter(chunks_dir / f"{chunk.number:06d}{suffix}", item.format) as writer:
                    writer.write(written)
                    writer.close(schema=written.table.schema if written.table is not None else None)
                write_atomic(chunks_dir / f"{chunk.number:06d}.json", json.dumps(done) + "\n")  # now it is done
            except GptlossError as exc:
                error = exc
        self.world.agree(error, named=False)
        return done

    def _output_rows(self, chunk: Chunk, columns: Columns) -> Chunk:
        """The chunk as written: every column and the scores, or for attribute files the id and the scores."""
        if self.settings.attributes is None:
            return with_columns(chunk, columns)
        key = self.settings.attributes
        if chunk.table is not None:
            return with_columns(Chunk(chunk.number, chunk.first, table=chunk.table.select([key])), columns)
        return with_columns(
            Chunk(chunk.number, chunk.first, objects=[{key: r.get(key)} for r in chunk.objects]), columns
        )

    def _assemble(self, item: CorpusFile, output: Path, chunks_dir: Path, done_mark: Path) -> None:
        """The finished chunks into the output, renamed when whole; then the done mark, then the chunks removed."""
        output.parent.mkdir(parents=True, exist_ok=True)
        suffix = ".parquet" if item.format == PARQUET else ".jsonl"
        marks = sorted(chunks_dir.glob("[0-9]*.json"))
        with ShardWriter(output, item.format, item.gzipped) as writer:
            for mark in marks:
                part = mark.with_suffix(suffix)
                if item.format == PARQUET:
                    writer.write(read_back(part, PARQUET))
                else:
                    writer.write_lines(part.read_bytes(), json.loads(mark.read_text())["rows"])
            writer.close(schema=self._empty_schema(item) if item.format == PARQUET else None)
        chunks = [json.loads(m.read_text()) for m in marks]
        manifest = json.loads((chunks_dir / "manifest.json").read_text())
        write_atomic(done_mark, json.dumps({**manifest, "chunks": chunks}) + "\n")
        shutil.rmtree(chunks_dir, ignore_errors=True)

    def _empty_schema(self, item: CorpusFile) -> Any:
        """The schema of an output with no rows: the input's (or the id column's) and the score columns."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.ParquetFile(item.path).schema_arrow
        if self.settings.attributes is not None:
            index = schema.get_field_index(self.settings.attributes)
            schema = pa.schema([schema.field(index)] if index >= 0 else [])
        for name, kind in self.scorer.types().items():
            schema = schema.append(pa.field(name, pa.type_for_alias(kind)))
        return schema

    def _quantiles(self, files: Sequence[CorpusFile]) -> dict[str, float | None]:
        """The perplexity quantiles across the rows of this run's outputs (rows without a score left out)."""
        values = [np.zeros(0)]
        if self.world.leader:
            for item in files:
                output = CorpusFile(self.outdir / item.relative, item.relative, item.format)
                values.append(column_of_file(output, "gptloss_perplexity"))
        found = np.concatenate(values)
        found = found[~np.isnan(found)]
        return {f"p{round(q * 100)}": (float(np.quantile(found, q)) if len(found) else None) for q in QUANTILES}


def _read_json(path: Path, again: str) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GptlossError(f"{path}: cannot be read back ({exc}); {again}") from exc
    if not isinstance(found, dict):
        raise GptlossError(f"{path}: not a gptloss annotate record; {again}")
    return found


def _row_estimate(item: CorpusFile) -> int:
    """The rows a file holds: Parquet's own count; JSON Lines' lines, counted (0 when it cannot be read)."""
    try:
        if item.format == PARQUET:
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(item.path).metadata.num_rows)
        import gzip

        opener = gzip.open if item.gzipped else open
        with opener(item.path, "rb") as handle:
            return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    except Exception:  # noqa: BLE001 - an estimate; reading it properly says what is wrong
        return 0
