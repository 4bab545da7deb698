"""`filter`: the rows of an annotated corpus whose score lies between two thresholds, the step after `annotate`.

The thresholds are absolute (`--min`, `--max`, either may be left open) or two quantiles of the column across
every input file (`--keep LO:HI`, numpy's default linear interpolation over every row that has a value). For
each input, one output of the same format at the same path below the output folder holds the rows whose value
lies between them, both ends included: every column as it was, in input order. A row without a value (null,
missing, or not a number) is dropped and counted.

Two passes, memory bounded by one chunk of rows (and by the column's values, 8 bytes a row, when quantiles are
asked): the first reads only the column, of every file, for the quantiles; the second streams each file a chunk
at a time into its output, written to a temporary name and renamed when whole. Every file's column is checked
(present, numeric) before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GptlossError, UsageError
from ..inputs.corpus import (
    PARQUET,
    CorpusFile,
    OnBadLine,
    ShardWriter,
    check_columns,
    column_of_file,
    column_values,
    parquet_schema,
    read_chunks,
    selected,
)

REPORT_SCHEMA = "gptloss.filter/v1"
DEFAULT_COLUMN = "gptloss_perplexity"
CHUNK_ROWS = 10_000
KEEP_EXAMPLE = "e.g. 0.25:0.75"


@dataclass(frozen=True)
class Cut:
    """Which values are kept: those between two quantiles of the column across the corpus (`quantiles`), or
    between absolute bounds (`minimum`, `maximum`; either may be None, open). Both ends are included."""

    quantiles: tuple[float, float] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if self.quantiles is not None:
            low, high = self.quantiles
            if self.minimum is not None or self.maximum is not None:
                raise UsageError("--keep and --min/--max do not go together: give quantiles or bounds")
            if not (0 <= low <= 1 and 0 <= high <= 1) or low > high:
                raise UsageError(
                    f"--keep {low:g}:{high:g}: give two quantiles in [0, 1], the lower first ({KEEP_EXAMPLE})"
                )
            return
        if self.minimum is None and self.maximum is None:
            raise UsageError(f"give --keep LO:HI (quantiles, {KEEP_EXAMPLE}) or --min and/or --max (values)")
        for flag, value in (("--min", self.minimum), ("--max", self.maximum)):
            if value is not None and math.isnan(value):
                raise UsageError(f"{flag} {value}: give a number")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise UsageError(f"--min {self.minimum:g} is above --max {self.maximum:g}")


def parse_keep(text: str) -> tuple[float, float]:
    """The two quantiles of `--keep LO:HI` (e.g. 0.25:0.75); their range is Cut's to check."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError(text)
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise UsageError(f"--keep {text}: give two quantiles LO:HI ({KEEP_EXAMPLE})") from None


@dataclass(frozen=True)
class FileCounts:
    """One output: the rows read from its input, those kept, those dropped for want of a value, and the
    malformed JSON lines left out (--on-bad-line skip)."""

    relative: str
    rows: int
    kept: int
    null: int
    bad_lines: int = 0
    first_bad_line: str | None = None

    @property
    def outside(self) -> int:
        """Rows with a value outside the thresholds."""
        return self.rows - self.kept - self.null

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.relative,
            "rows": self.rows,
            "kept": self.kept,
            "null": self.null,
            "outside": self.outside,
            "bad_lines": self.bad_lines,
            **({"first_bad_line": self.first_bad_line} if self.first_bad_line else {}),
        }


@dataclass(frozen=True)
class FilterResult:
    """A filter run: the column, the cut asked, the thresholds it came to (None: open), and each file's counts."""

    column: str
    cut: Cut
    low: float | None
    high: float | None
    files: tuple[FileCounts, ...]
    outdir: str

    def total(self, key: str) -> int:
        return sum(int(f.to_dict()[key]) for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        quantiles = self.cut.quantiles
        return {
            "schema": REPORT_SCHEMA,
            "column": self.column,
            "quantiles": None if quantiles is None else {"low": quantiles[0], "high": quantiles[1]},
            "thresholds": {"min": self.low, "max": self.high},
            "output": self.outdir,
            **{key: self.total(key) for key in ("rows", "kept", "null", "outside", "bad_lines")},
            "files": [f.to_dict() for f in self.files],
        }


def filter_corpus(
    files: Sequence[CorpusFile],
    outdir: Path,
    cut: Cut,
    column: str = DEFAULT_COLUMN,
    on_bad_line: OnBadLine = OnBadLine.fail,
    chunk_rows: int = CHUNK_ROWS,
) -> FilterResult:
    """Write each file's rows whose `column` lies within `cut` to its path below `outdir` (an existing folder;
    see the module's docstring). One line for a file without the column, a column that is not numeric, or,
    with quantiles, a corpus where no row has a value."""
    for item in files:
        check_column(item, column, on_bad_line, chunk_rows)
    low, high = cut.minimum, cut.maximum
    if cut.quantiles is not None:
        low, high = quantile_thresholds(files, column, cut.quantiles, on_bad_line, chunk_rows)
    counts = tuple(_filter_file(item, outdir, column, low, high, on_bad_line, chunk_rows) for item in files)
    if not any(c.rows - c.null for c in counts) and any(c.rows for c in counts):
        raise GptlossError(f"{_no_values(column, len(files))}; the outputs in {outdir} hold no rows")
    return FilterResult(column, cut, low, high, counts, str(outdir))


def check_column(
    item: CorpusFile, column: str, on_bad_line: OnBadLine = OnBadLine.fail, chunk_rows: int = CHUNK_ROWS
) -> None:
    """One line for a file without `column` (naming those it has) or whose column is not numeric: Parquet's by
    its type; JSON Lines' by its first chunk of rows, where values that are there must include a number."""
    if item.format == PARQUET:
        import pyarrow as pa

        schema = parquet_schema(item)
        if column not in schema.names:
            raise GptlossError(f"{item.path}: no column {column!r}; its columns: {', '.join(schema.names) or 'none'}")
        kind = schema.field(column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
            raise GptlossError(f"{item.path}: column {column!r} is not numeric ({kind}); give a score column")
        return
    first = next(read_chunks(item, chunk_rows, on_bad_line), None)
    if first is None:
        return
    check_columns(item, first, [column])
    if np.isnan(column_values(first, column)).all():
        other = next((row[column] for row in first.objects if row.get(column) is not None), None)
        if other is not None:
            shown = type(other).__name__ if isinstance(other, dict | list) else repr(other)[:40]
            raise GptlossError(
                f"{item.path}: column {column!r} is not numeric (its rows hold {shown}); give a score column"
            )


def quantile_thresholds(
    files: Sequence[CorpusFile],
    column: str,
    quantiles: tuple[float, float],
    on_bad_line: OnBadLine = OnBadLine.fail,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[float, float]:
    """The two quantiles of `column` over every row of every file that has a value (numpy's default, linear).
    Only the column is kept in memory. One line when no row has a value."""
    parts = [np.zeros(0)]
    for item in files:
        values = column_of_file(item, column, chunk_rows, on_bad_line)
        parts.append(values[~np.isnan(values)])
    found = np.concatenate(parts)
    if not len(found):
        raise GptlossError(f"{_no_values(column, len(files))}; nothing to take quantiles of")
    low, high = np.quantile(found, list(quantiles))
    return float(low), float(high)


def _no_values(column: str, files: int) -> str:
    return f"no row of the {files} file(s) has a value in column {column!r} (each is null or not a number)"


def _filter_file(
    item: CorpusFile,
    outdir: Path,
    column: str,
    low: float | None,
    high: float | None,
    on_bad_line: OnBadLine,
    chunk_rows: int,
) -> FileCounts:
    """Stream one file into its output, a chunk at a time, keeping the rows whose value lies in [low, high]."""
    output = outdir / item.relative
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GptlossError(f"{output.parent}: cannot write ({exc.strerror or exc})") from exc
    rows = kept = null = bad_lines = 0
    first_bad_line: str | None = None
    with ShardWriter(output, item.format, item.gzipped) as writer:
        for chunk in read_chunks(item, chunk_rows, on_bad_line):
            values = column_values(chunk, column)
            has = ~np.isnan(values)
            keep = has.copy()
            if low is not None:
                keep &= values >= low
            if high is not None:
                keep &= values <= high
            writer.write(selected(chunk, keep))
            rows, kept, null = rows + len(chunk), kept + int(keep.sum()), null + int((~has).sum())
            bad_lines += len(chunk.skipped)
            first_bad_line = first_bad_line or next(iter(chunk.skipped), None)
        writer.close(schema=parquet_schema(item) if item.format == PARQUET else None)
    return FileCounts(item.relative, rows, kept, null, bad_lines, first_bad_line)
