"""A corpus of shard files (Parquet, JSON Lines, gzipped JSON Lines), read in chunks of rows and written back in
the same format: what `annotate` adds score columns to and `filter` keeps rows of.

A row keeps every column as it was read: a Parquet chunk stays an Arrow table (its schema and metadata kept,
columns appended), a JSON Lines row stays the object the line held (keys in order, values as parsed, written
back with the new keys after them). Memory holds one chunk at a time; an output is written to a temporary
name beside it and renamed when whole (`ShardWriter`).
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np

from ..errors import GptlossError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

PARQUET, JSONL = "parquet", "jsonl"
SUFFIXES = {".parquet": PARQUET, ".jsonl": JSONL, ".ndjson": JSONL, ".jsonl.gz": JSONL, ".ndjson.gz": JSONL}
KNOWN = ", ".join(SUFFIXES)
MAX_LINE = 64 * 1024 * 1024  # the longest JSON Lines row read (memory stays bounded by it)


class OnBadLine(str, Enum):
    """What a malformed JSON Lines row does: stop the run (fail), or be left out and counted (skip)."""

    fail = "fail"
    skip = "skip"


def file_format(path: Path) -> str | None:
    """parquet or jsonl by the name's suffix (.jsonl.gz is gzipped JSON Lines); None for any other file."""
    name = path.name.lower()
    for suffix, kind in SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return kind
    return None


@dataclass(frozen=True)
class CorpusFile:
    """One shard of the corpus, and where its output goes below the output folder (`relative`)."""

    path: Path
    relative: str
    format: str  # PARQUET or JSONL

    @property
    def gzipped(self) -> bool:
        return self.path.name.lower().endswith(".gz")

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def identity(self) -> dict[str, Any]:
        """What says the file is unchanged since a run began: its size and modification time."""
        status = self.path.stat()
        return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def corpus_files(paths: Sequence[str]) -> list[CorpusFile]:
    """The shard files named: files, folders (their Parquet and JSON Lines files, recursively, sorted) and glob
    patterns. Each output goes to the file's path below the folder (or the pattern's fixed part) it was found
    in; a file named on its own goes to its name. One line for a file of another kind, nothing found, or two
    inputs that would write the same output."""
    found: list[CorpusFile] = []
    for given in paths:
        path = Path(given).expanduser()
        if glob.has_magic(given):
            base = _fixed_part(given)
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(given), recursive=True))
            files = [p for p in matches if p.is_file() and file_format(p) is not None]
            if not files:
                raise GptlossError(f"{given}: matches no Parquet or JSON Lines file ({KNOWN})")
            found += [CorpusFile(p, os.path.relpath(p, base), str(file_format(p))) for p in files]
        elif path.is_dir():
            files = sorted(
                Path(root) / name
                for root, dirs, names in os.walk(path)
                for name in names
                if not name.startswith(".") and file_format(Path(name)) is not None
                if not any(part.startswith(".") for part in Path(root).relative_to(path).parts)
            )
            if not files:
                raise GptlossError(f"{given}: holds no Parquet or JSON Lines file ({KNOWN})")
            found += [CorpusFile(p, str(p.relative_to(path)), str(file_format(p))) for p in files]
        elif path.is_file():
            kind = file_format(path)
            if kind is None:
                raise GptlossError(f"{given}: neither Parquet nor JSON Lines (known: {KNOWN})")
            found.append(CorpusFile(path, path.name, kind))
        else:
            raise GptlossError(f"{given}: no such file or folder")
    seen: dict[str, Path] = {}
    for item in found:
        if item.relative in seen:
            raise GptlossError(
                f"{seen[item.relative]} and {item.path} would both be written as {item.relative}; "
                "give their folder instead"
            )
        seen[item.relative] = item.path
    return found


def check_outdir(outdir: Path, inputs: Sequence[str], files: Sequence[CorpusFile], folders: Sequence[str] = ()) -> None:
    """Make the output folder (and its `folders`, for a run's own state), or say in one line why not: it cannot
    be made or written, or it lies inside an input folder (its outputs would be read as input next time) or
    holds an input file (an output could overwrite it)."""
    real = Path(os.path.realpath(outdir))
    for given in inputs:
        path = Path(given).expanduser()
        if path.is_dir() and (real == Path(os.path.realpath(path)) or Path(os.path.realpath(path)) in real.parents):
            raise GptlossError(f"--output {outdir}: is inside the input folder {given}; give a folder outside it")
    for item in files:
        if real in Path(os.path.realpath(item.path)).parents:
            raise GptlossError(f"--output {outdir}: holds the input {item.path}; give another folder")
    if outdir.exists() and not outdir.is_dir():
        raise GptlossError(f"--output {outdir}: is a file; give a folder")
    if not outdir.exists() and not outdir.parent.is_dir():
        raise GptlossError(f"--output {outdir}: the folder {outdir.parent} does not exist")
    made = [outdir, *(outdir / name for name in folders)]
    try:
        for folder in made:
            folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise GptlossError(f"--output {outdir}: cannot write there ({exc.strerror or exc})") from exc
    if not all(os.access(folder, os.W_OK) for folder in made):
        raise GptlossError(f"--output {outdir}: cannot write there (permission denied)")


def _fixed_part(pattern: str) -> str:
    """The folders of a glob pattern before its first wildcard."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.path.join(*fixed) if fixed else "."


@dataclass
class Chunk:
    """Rows `first`..`first + len - 1` of a file: an Arrow table (Parquet) or the parsed objects (JSON Lines),
    with each row's name for messages (`where`), and the bad lines left out before them (`skipped`)."""

    number: int
    first: int
    table: pa.Table | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what was wrong with each bad line left out

    def __len__(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.objects)

    def records(self, names: Sequence[str]) -> list[dict[str, Any]]:
        """Each row's values of the columns `names` (a row without one has no key for it)."""
        if self.table is None:
            return [{n: row[n] for n in names if n in row} for row in self.objects]
        present = [n for n in names if n in self.table.column_names]
        values = {n: self.table.column(n).to_pylist() for n in present}
        return [{n: values[n][i] for n in present} for i in range(len(self))]

    def columns(self) -> list[str]:
        """The column names (of a JSON Lines chunk: every key of its rows, first seen first)."""
        if self.table is not None:
            return list(self.table.column_names)
        return list(dict.fromkeys(k for row in self.objects for k in row))


def read_chunks(
    item: CorpusFile, rows: int, on_bad_line: OnBadLine = OnBadLine.fail, start: int = 0
) -> Iterator[Chunk]:
    """The file's rows in chunks of `rows` (the last may be shorter), from chunk number `start` on (the
    chunks before it are read past, not kept). One line for a file that is not what its name says."""
    reader = _parquet_chunks if item.format == PARQUET else _jsonl_chunks
    for chunk in reader(item, rows, on_bad_line):
        if chunk.number >= start:
            yield chunk


def _parquet_chunks(item: CorpusFile, rows: int, on_bad_line: OnBadLine) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(item.path)
        schema = handle.schema_arrow
        batches = handle.iter_batches(batch_size=rows)
        first = 0
        for number, batch in enumerate(batches):
            table = pa.Table.from_batches([batch], schema=schema)
            where = [f"{item.relative}[{first + i}]" for i in range(table.num_rows)]
            yield Chunk(number, first, table=table, where=where)
            first += table.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise GptlossError(f"{item.path}: not a readable Parquet file ({first_line(exc)})") from exc


def _open_lines(item: CorpusFile) -> IO[bytes]:
    try:
        return cast(BinaryIO, gzip.open(item.path, "rb") if item.gzipped else item.path.open("rb"))
    except OSError as exc:
        raise GptlossError(f"{item.path}: cannot read ({exc.strerror or exc})") from exc


def _jsonl_chunks(item: CorpusFile, rows: int, on_bad_line: OnBadLine) -> Iterator[Chunk]:
    number, first = 0, 0
    chunk = Chunk(0, 0)
    with _open_lines(item) as handle:
        lines = iter(lambda: handle.readline(MAX_LINE + 1), b"")
        line = 0
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                break
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise GptlossError(f"{item.path}: cannot read past line {line} ({first_line(exc)})") from exc
            line += 1
            if len(raw) > MAX_LINE:
                raise GptlossError(f"{item.path}:{line}: a line longer than {MAX_LINE:,} bytes")
            if not raw.strip():
                continue
            row, problem = _parse_line(raw)
            if problem is not None:
                if on_bad_line is OnBadLine.fail:
                    raise GptlossError(f"{item.path}:{line}: {problem}; fix it or pass --on-bad-line skip")
                chunk.skipped.append(f"{item.path}:{line}: {problem}")
                continue
            chunk.objects.append(row)
            chunk.where.append(f"{item.relative}:{line}")
            if len(chunk.objects) == rows:
                yield chunk
                number, first = number + 1, first + rows
                chunk = Chunk(number, first)
    if chunk.objects or chunk.skipped or number == 0:
        yield chunk


def _parse_line(raw: bytes) -> tuple[dict[str, Any], str | None]:
    try:
        row = json.loads(raw)
    except UnicodeDecodeError as exc:
        return {}, f"not valid UTF-8 at byte {exc.start}"
    except json.JSONDecodeError as exc:
        return {}, f"not valid JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(row, dict):
        return {}, "not a JSON object"
    return row, None


def check_columns(item: CorpusFile, chunk: Chunk, wanted: Sequence[str]) -> None:
    """One line when none of a file's (first chunk's) rows has a column the run reads, naming those it has."""
    present = set(chunk.columns())
    missing = [c for c in wanted if c not in present]
    if missing and len(chunk):
        available = ", ".join(chunk.columns()) or "none"
        raise GptlossError(f"{item.path}: no column {missing[0]!r}; its columns: {available}")


# Types of the columns added to a chunk: Arrow's, and JSON's for JSON Lines (None for a null).
ColumnType = str  # "int64", "float64" or "string"


def with_columns(chunk: Chunk, added: dict[str, tuple[ColumnType, list[Any]]]) -> Chunk:
    """The chunk with columns appended after the others (name -> (type, one value per row))."""
    if chunk.table is not None:
        import pyarrow as pa

        table = chunk.table
        for name, (kind, values) in added.items():
            table = table.append_column(
                pa.field(name, pa.type_for_alias(kind)), pa.array(values, pa.type_for_alias(kind))
            )
        return Chunk(chunk.number, chunk.first, table=table, where=chunk.where, skipped=chunk.skipped)
    rows = [{**row, **{name: values[i] for name, (_, values) in added.items()}} for i, row in enumerate(chunk.objects)]
    return Chunk(chunk.number, chunk.first, objects=rows, where=chunk.where, skipped=chunk.skipped)


def selected(chunk: Chunk, keep: np.ndarray) -> Chunk:
    """The chunk's rows where `keep` (bool, one per row) is true."""
    if chunk.table is not None:
        import pyarrow as pa

        return Chunk(chunk.number, chunk.first, table=chunk.table.filter(pa.array(keep, pa.bool_())))
    return Chunk(chunk.number, chunk.first, objects=[r for r, k in zip(chunk.objects, keep, strict=True) if k])


def column_values(chunk: Chunk, name: str) -> np.ndarray:
    """A numeric column as float64, NaN where null or not a number (a column the chunk lacks: all NaN)."""
    if chunk.table is not None:
        if name not in chunk.table.column_names:
            return np.full(len(chunk), np.nan)
        import pyarrow as pa
        import pyarrow.compute as pc

        column = chunk.table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            return np.full(len(chunk), np.nan)
        return np.asarray(pc.fill_null(pc.cast(column, pa.float64()), float("nan")), dtype=np.float64)
    values = (row.get(name) for row in chunk.objects)
    number = (float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in values)
    return np.fromiter(number, dtype=np.float64, count=len(chunk))


class ShardWriter:
    """One output file in a corpus format, written to a temporary name beside `path` and renamed to it only
    when whole (`close`); `discard` (or leaving a `with` block by an error) removes the temporary file.
    JSON Lines rows are written as they come; Parquet chunks become row groups."""

    def __init__(self, path: Path, format: str, gzipped: bool = False) -> None:
        self.path, self.format, self.gzipped = path, format, gzipped
        if not path.parent.is_dir():
            raise GptlossError(f"{path.parent}: no such folder")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise GptlossError(f"{path}: cannot write ({exc.strerror or exc})") from exc
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        os.close(fd)
        self.tmp = Path(tmp)
        self._lines: IO[bytes] | None = None
        self._parquet: Any = None
        self.rows = 0

    def write(self, chunk: Chunk) -> None:
        try:
            if self.format == PARQUET:
                self._write_table(chunk.table)
            else:
                self._write_bytes(b"".join(_json_line(row) for row in chunk.objects))
        except OSError as exc:
            raise GptlossError(f"{self.path}: cannot write ({exc.strerror or exc})") from exc
        self.rows += len(chunk)

    def write_lines(self, data: bytes, rows: int) -> None:
        """JSON Lines already written (a finished chunk's file), copied as they are."""
        try:
            self._write_bytes(data)
        except OSError as exc:
            raise GptlossError(f"{self.path}: cannot write ({exc.strerror or exc})") from exc
        self.rows += rows

    def _write_table(self, table: Any) -> None:
        import pyarrow.parquet as pq

        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.tmp, table.schema)
        self._parquet.write_table(table)

    def _write_bytes(self, data: bytes) -> None:
        if self._lines is None:
            self._lines = cast(BinaryIO, gzip.open(self.tmp, "wb") if self.gzipped else self.tmp.open("wb"))
        self._lines.write(data)

    def close(self, schema: Any = None) -> None:
        """Finish the file and give it its name (an empty Parquet file gets `schema`, if given)."""
        try:
            if self.format == PARQUET:
                if self._parquet is None and schema is not None:
                    self._write_table(schema.empty_table())
                if self._parquet is not None:
                    self._parquet.close()
            else:
                if self._lines is None:
                    self._write_bytes(b"")
                assert self._lines is not None
                self._lines.close()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.discard()
            raise GptlossError(f"{self.path}: cannot write ({exc.strerror or exc})") from exc

    def discard(self) -> None:
        for handle in (self._lines, self._parquet):
            try:
                if handle is not None:
                    handle.close()
            except Exception:  # noqa: BLE001, S110 - the file is being thrown away
                pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is not None:
            self.discard()


def _json_line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


def read_back(path: Path, format: str) -> Chunk:
    """A chunk file written by ShardWriter (uncompressed), whole: a Parquet table, or JSON Lines as objects."""
    if format == PARQUET:
        import pyarrow.parquet as pq

        return Chunk(0, 0, table=pq.read_table(path))
    with path.open("rb") as handle:
        return Chunk(0, 0, objects=[json.loads(line) for line in handle if line.strip()])


def parquet_schema(item: CorpusFile) -> pa.Schema:
    """A Parquet file's Arrow schema, read from its footer. One line for a file that is not Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(item.path).schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise GptlossError(f"{item.path}: not a readable Parquet file ({first_line(exc)})") from exc


def column_of_file(
    item: CorpusFile, name: str, rows: int = 10_000, on_bad_line: OnBadLine = OnBadLine.fail
) -> np.ndarray:
    """One numeric column of a whole file as float64 (NaN where null), read a chunk at a time (Parquet: only
    that column). One line when the file has no such column, naming those it has."""
    if item.format == PARQUET:
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = parquet_schema(item).names
        if name not in names:
            raise GptlossError(f"{item.path}: no column {name!r}; its columns: {', '.join(names) or 'none'}")
        try:
            table = pq.read_table(item.path, columns=[name])
        except (OSError, pa.ArrowException) as exc:
            raise GptlossError(f"{item.path}: not a readable Parquet file ({first_line(exc)})") from exc
        return column_values(Chunk(0, 0, table=table), name)
    parts, seen = [], False
    columns: dict[str, None] = {}  # the keys of the rows read until the column was seen, first seen first
    for chunk in read_chunks(item, rows, on_bad_line):
        if not seen:
            seen = any(name in row for row in chunk.objects)
            columns.update(dict.fromkeys(chunk.columns()))
        parts.append(column_values(chunk, name))
    if not seen and any(len(p) for p in parts):
        raise GptlossError(f"{item.path}: no column {name!r}; its columns: {', '.join(columns) or 'none'}")
    return np.concatenate(parts) if parts else np.zeros(0)
