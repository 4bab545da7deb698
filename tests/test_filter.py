"""filter: the rows of an annotated corpus between two thresholds (corpus-wide quantiles or values), each output
in its input's format at its input's path, every column and the row order unchanged, rows without a value
dropped and counted; and one line for each input that cannot work."""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CORPUS, one_line_error, run, usage_error

COLUMN = "gptloss_perplexity"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A shard's rows as Python objects: Parquet's by Arrow, JSON Lines' as parsed (keys in their order)."""
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def number(value: Any) -> float | None:
    """A row's value as filter reads it: a number (not a bool, not NaN), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def make_corpus(root: Path, seed: int = 0) -> dict[str, Path]:
    """Annotated-like shards: a Parquet file in several row groups (schema metadata, a list column, nulls), a
    JSON Lines file and a gzipped one below a subfolder (null, missing and non-numeric values, nested objects)."""
    rng = np.random.default_rng(seed)
    files: dict[str, Path] = {}
    root.mkdir(parents=True)
    n = 23
    perplexity = rng.lognormal(3, 0.5, n).tolist()
    for i in (2, 11, 17):
        perplexity[i] = None
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "text": [f"row {i} ünïcode" for i in range(n)],
            "tags": [[f"t{i}", "x"] for i in range(n)],
            COLUMN: pa.array(perplexity, pa.float64()),
            "gptloss_tokens": pa.array(rng.integers(1, 200, n), pa.int64()),
        }
    ).replace_schema_metadata({"source": "test"})
    files["a.parquet"] = root / "a.parquet"
    pq.write_table(table, files["a.parquet"], row_group_size=5)
    for name, count in (("sub/b.jsonl", 17), ("sub/deeper/c.jsonl.gz", 12)):
        rows: list[dict[str, Any]] = []
        for i in range(count):
            row: dict[str, Any] = {"id": f"{name}-{i}", "text": "Zählt 🙂", "meta": {"k": [i, None]}}
            row[COLUMN] = float(rng.lognormal(3, 0.5))
            row["gptloss_tokens"] = int(rng.integers(1, 200))
            if i == 3:
                row[COLUMN] = None
            if i == 5:
                del row[COLUMN]
            if i == 7:
                row[COLUMN] = "n/a"
            if i == 9:
                row[COLUMN] = 20  # an int among floats: a number all the same
            rows.append(row)
        files[name] = write_jsonl(root / name, rows)
    return files


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    return make_corpus(tmp_path / "in")


def all_values(files: dict[str, Path], column: str = COLUMN) -> np.ndarray:
    found = [number(row.get(column)) for path in files.values() for row in read_rows(path)]
    return np.array([v for v in found if v is not None], dtype=np.float64)


def expected_rows(path: Path, low: float | None, high: float | None, column: str = COLUMN) -> list[dict[str, Any]]:
    def kept(row: dict[str, Any]) -> bool:
        value = number(row.get(column))
        return value is not None and (low is None or value >= low) and (high is None or value <= high)

    return [row for row in read_rows(path) if kept(row)]


def check_outputs(
    files: dict[str, Path], out: Path, low: float | None, high: float | None, column: str = COLUMN
) -> dict[str, dict[str, int]]:
    """Each output holds exactly the input's rows between low and high, in order, every column (and key order,
    and Parquet's schema with its metadata) as it was; returns each file's rows, kept and null counts."""
    counts = {}
    for name, path in files.items():
        output = out / name
        assert output.is_file(), name
        got, want = read_rows(output), expected_rows(path, low, high, column)
        assert got == want, name
        assert [list(r) for r in got] == [list(r) for r in want], name
        if path.suffix == ".parquet":
            schema = pq.read_schema(output)
            assert schema.equals(pq.read_schema(path), check_metadata=True)
        if path.name.endswith(".gz"):
            assert output.read_bytes()[:2] == b"\x1f\x8b"  # still gzipped
        rows = read_rows(path)
        null = sum(1 for r in rows if number(r.get(column)) is None)
        counts[name] = {"rows": len(rows), "kept": len(want), "null": null}
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    assert {(out / name).stat().st_mode & 0o777 for name in files} == {0o666 & ~umask}  # as open() makes a file
    return counts


def report_counts(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {f["file"]: {k: f[k] for k in ("rows", "kept", "null")} for f in report["files"]}


@pytest.mark.parametrize("keep", ["0.25:0.75", "0:1", "0.5:0.5", "0.1:0.35"])
def test_keep_takes_quantiles_across_every_file(corpus: dict[str, Path], tmp_path: Path, keep: str) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = run("filter", tmp_path / "in", "--keep", keep, "-o", out, "--report", report)
    assert result.exit_code == 0, result.stderr
    data = json.loads(report.read_text())
    low_q, high_q = (float(q) for q in keep.split(":"))
    low, high = np.quantile(all_values(corpus), [low_q, high_q])
    assert data["schema"] == "gptloss.filter/v1"
    assert data["column"] == COLUMN
    assert data["quantiles"] == {"low": low_q, "high": high_q}
    assert data["thresholds"] == {"min": float(low), "max": float(high)}
    counts = check_outputs(corpus, out, float(low), float(high))
    assert report_counts(data) == counts
    assert data["rows"] == sum(c["rows"] for c in counts.values()) == 23 + 17 + 12
    assert data["null"] == sum(c["null"] for c in counts.values()) == 3 + 3 + 3
    assert data["kept"] == sum(c["kept"] for c in counts.values())
    assert data["outside"] == data["rows"] - data["kept"] - data["null"]
    if keep == "0:1":  # both ends kept: every row with a value
        assert data["kept"] == data["rows"] - data["null"]
    if keep == "0.5:0.5":  # an odd count of values: the median is one of them (20, in two rows), kept
        values = all_values(corpus)
        assert len(values) % 2 == 1 and low == high == 20
        assert data["kept"] == int((values == low).sum()) == 2
    assert f"{float(low):.8g} <= {COLUMN} <= {float(high):.8g}" in result.stdout
    for name in counts:
        assert name in result.stdout
    assert "total (3 files)" in result.stdout


@pytest.mark.parametrize("which", ["min", "max", "both"])
def test_min_and_max_are_values_kept_inclusively(corpus: dict[str, Path], tmp_path: Path, which: str) -> None:
    values = np.sort(all_values(corpus))
    low, high = float(values[7]), float(values[-6])  # values that rows hold: both ends kept
    bounds = {"min": (low, None), "max": (None, high), "both": (low, high)}[which]
    args = [a for flag, v in zip(("--min", "--max"), bounds, strict=True) if v is not None for a in (flag, repr(v))]
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = run("filter", tmp_path / "in", *args, "-o", out, "--report", report)
    assert result.exit_code == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["quantiles"] is None
    assert data["thresholds"] == {"min": bounds[0], "max": bounds[1]}
    counts = check_outputs(corpus, out, *bounds)
    assert report_counts(data) == counts
    expected = {"min": len(values) - 7, "max": len(values) - 5, "both": len(values) - 12}[which]
    assert data["kept"] == expected


def test_an_integer_column_and_a_file_named_alone(corpus: dict[str, Path], tmp_path: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"
    path = corpus["a.parquet"]
    result = run("filter", path, "--column", "gptloss_tokens", "--keep", "0.3:0.6", "-o", out, "--report", report)
    assert result.exit_code == 0, result.stderr
    tokens = pq.read_table(path).column("gptloss_tokens").to_numpy().astype(np.float64)
    low, high = np.quantile(tokens, [0.3, 0.6])
    data = json.loads(report.read_text())
    assert data["thresholds"] == {"min": float(low), "max": float(high)}
    check_outputs({"a.parquet": path}, out, float(low), float(high), "gptloss_tokens")


def test_rows_without_a_number_are_dropped_and_counted(tmp_path: Path) -> None:
    rows = [
        {"id": 0, COLUMN: 1.5},
        {"id": 1, COLUMN: None},
        {"id": 2},
        {"id": 3, COLUMN: "12"},
        {"id": 4, COLUMN: True},
        {"id": 5, COLUMN: [1.0]},
        {"id": 6, COLUMN: float("nan")},
        {"id": 7, COLUMN: 3},
        {"id": 8, COLUMN: 2.0},
    ]
    write_jsonl(tmp_path / "in" / "x.jsonl", rows)
    pq.write_table(pa.table({COLUMN: pa.array([None, 4.0, float("nan"), 0.5])}), tmp_path / "in" / "y.parquet")
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = run("filter", tmp_path / "in", "--keep", "0:1", "-o", out, "--report", report)
    assert result.exit_code == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["thresholds"] == {"min": 0.5, "max": 4.0}
    assert report_counts(data) == {
        "x.jsonl": {"rows": 9, "kept": 3, "null": 6},
        "y.parquet": {"rows": 4, "kept": 2, "null": 2},
    }
    assert [r["id"] for r in read_rows(out / "x.jsonl")] == [0, 7, 8]
    assert read_rows(out / "y.parquet") == [{COLUMN: 4.0}, {COLUMN: 0.5}]


def test_chunks_change_nothing(corpus: dict[str, Path], tmp_path: Path) -> None:
    """Streamed three rows at a time, the outputs are those of one chunk per file, byte for byte."""
    from gptloss_cli.inputs.corpus import corpus_files
    from gptloss_cli.tasks.filter import Cut, filter_corpus

    files = corpus_files([str(tmp_path / "in")])
    results = []
    for rows in (3, 10_000):
        out = tmp_path / f"out{rows}"
        out.mkdir()
        results.append(filter_corpus(files, out, Cut(quantiles=(0.2, 0.9)), chunk_rows=rows).to_dict())
    assert results[0]["files"] == results[1]["files"] and results[0]["thresholds"] == results[1]["thresholds"]
    for name in corpus:
        small, whole = tmp_path / "out3" / name, tmp_path / "out10000" / name
        if name.endswith(".parquet"):
            assert pq.read_table(small).equals(pq.read_table(whole))
            assert pq.ParquetFile(small).metadata.num_row_groups > 1
        else:
            assert read_rows(small) == read_rows(whole)
    low, high = results[0]["thresholds"]["min"], results[0]["thresholds"]["max"]
    check_outputs(corpus, tmp_path / "out3", low, high)


def test_empty_files_give_empty_outputs(tmp_path: Path) -> None:
    schema = pa.schema([("text", pa.string()), (COLUMN, pa.float64())], metadata={"k": "v"})
    (tmp_path / "in").mkdir()
    pq.write_table(schema.empty_table(), tmp_path / "in" / "empty.parquet")
    (tmp_path / "in" / "empty.jsonl").write_text("")
    write_jsonl(tmp_path / "in" / "full.jsonl", [{COLUMN: 1.0}, {COLUMN: 2.0}])
    out = tmp_path / "out"
    result = run("filter", tmp_path / "in", "--max", "1", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert pq.read_table(out / "empty.parquet").num_rows == 0
    assert pq.read_schema(out / "empty.parquet").equals(schema, check_metadata=True)
    assert (out / "empty.jsonl").read_text() == ""
    assert read_rows(out / "full.jsonl") == [{COLUMN: 1.0}]


def test_malformed_lines_stop_the_run_or_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "in" / "x.jsonl"
    path.parent.mkdir()
    path.write_text(f'{{"{COLUMN}": 1}}\nnot json\n{{"{COLUMN}": 2}}\n{{"{COLUMN}": 3}}\n')
    one_line_error(run("filter", path, "--keep", "0:1", "-o", tmp_path / "out"), "x.jsonl:2", "--on-bad-line skip")
    out, report = tmp_path / "out2", tmp_path / "report.json"
    result = run("filter", path, "--keep", "0.5:1", "-o", out, "--on-bad-line", "skip", "--report", report)
    assert result.exit_code == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["bad_lines"] == 1 and "x.jsonl:2: not valid JSON" in data["files"][0]["first_bad_line"]
    assert data["thresholds"] == {"min": 2.0, "max": 3.0}
    assert read_rows(out / "x.jsonl") == [{COLUMN: 2}, {COLUMN: 3}]
    assert "left out 1 malformed line(s)" in result.stderr


def test_annotated_by_annotate_then_filtered(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    rows = [{"id": i, "text": text} for i, text in enumerate(CORPUS + [t.upper() for t in CORPUS])]
    source = write_jsonl(tmp_path / "in" / "docs.jsonl", rows)
    annotated = tmp_path / "annotated"
    result = run("annotate", source, "-o", annotated, "-m", model_dirs["llama"])
    assert result.exit_code == 0, result.stderr
    out, report = tmp_path / "filtered", tmp_path / "report.json"
    result = run("filter", annotated, "--keep", "0.2:0.8", "-o", out, "--report", report)
    assert result.exit_code == 0, result.stderr
    scored = read_rows(annotated / "docs.jsonl")
    values = np.array([r[COLUMN] for r in scored])
    assert len(values) == len(rows) and not np.isnan(values).any()
    low, high = np.quantile(values, [0.2, 0.8])
    data = json.loads(report.read_text())
    assert data["thresholds"] == {"min": float(low), "max": float(high)}
    kept = read_rows(out / "docs.jsonl")
    assert kept == [r for r in scored if low <= r[COLUMN] <= high]
    assert 0 < len(kept) < len(rows) and data["kept"] == len(kept)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--keep", "0.25"], ["--keep 0.25", "LO:HI"]),
        (["--keep", "a:b"], ["--keep a:b", "LO:HI"]),
        (["--keep", "0.1:0.5:0.9"], ["--keep 0.1:0.5:0.9", "LO:HI"]),
        (["--keep", "0.5:1.5"], ["--keep 0.5:1.5", "[0, 1]"]),
        (["--keep", "-0.1:0.5"], ["--keep -0.1:0.5", "[0, 1]"]),
        (["--keep", "0.8:0.2"], ["--keep 0.8:0.2", "the lower first"]),
        (["--keep", "25:75"], ["--keep 25:75", "[0, 1]"]),
        (["--keep", "0.2:0.8", "--min", "1"], ["--keep and --min/--max"]),
        (["--keep", "0.2:0.8", "--max", "1"], ["--keep and --min/--max"]),
        ([], ["--keep LO:HI", "--min"]),
        (["--min", "5", "--max", "1"], ["--min 5 is above --max 1"]),
        (["--min", "nan"], ["--min nan"]),
    ],
)
def test_a_bad_command_line_says_why_in_one_line(
    corpus: dict[str, Path], tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    usage_error(run("filter", tmp_path / "in", *args, "-o", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("column", "file", "fragments"),
    [
        ("gptloss_nope", "a.parquet", ["a.parquet: no column 'gptloss_nope'", "its columns: id, text, tags,"]),
        ("gptloss_nope", "sub/b.jsonl", ["b.jsonl: no column 'gptloss_nope'", "its columns: id, text, meta,"]),
        ("text", "a.parquet", ["a.parquet: column 'text' is not numeric (string)"]),
        ("text", "sub/b.jsonl", ["b.jsonl: column 'text' is not numeric", "Zählt"]),
        ("meta", "sub/b.jsonl", ["b.jsonl: column 'meta' is not numeric (its rows hold dict)"]),
        ("tags", "a.parquet", ["a.parquet: column 'tags' is not numeric (list<"]),
    ],
)
@pytest.mark.parametrize("thresholds", [["--keep", "0.1:0.9"], ["--min", "0"]])
def test_a_column_that_cannot_be_compared_says_why_in_one_line(
    corpus: dict[str, Path], tmp_path: Path, column: str, file: str, fragments: list[str], thresholds: list[str]
) -> None:
    out = tmp_path / "out"
    one_line_error(run("filter", corpus[file], "--column", column, *thresholds, "-o", out), *fragments)
    assert not list(out.rglob("*.*"))  # nothing written


@pytest.mark.parametrize("thresholds", [["--keep", "0.1:0.9"], ["--min", "0"]])
def test_no_row_with_a_value_says_so_in_one_line(tmp_path: Path, thresholds: list[str]) -> None:
    write_jsonl(tmp_path / "in" / "x.jsonl", [{COLUMN: None, "text": "a"}, {"text": "b"}])
    pq.write_table(pa.table({COLUMN: pa.array([None, None], pa.float64())}), tmp_path / "in" / "y.parquet")
    result = run("filter", tmp_path / "in", *thresholds, "-o", tmp_path / "out")
    one_line_error(result, f"no row of the 2 file(s) has a value in column '{COLUMN}'")


def test_an_output_folder_inside_or_holding_an_input_is_refused(corpus: dict[str, Path], tmp_path: Path) -> None:
    inside = tmp_path / "in" / "filtered"
    one_line_error(run("filter", tmp_path / "in", "--keep", "0:1", "-o", inside), "inside the input folder")
    assert not inside.exists()
    one_line_error(run("filter", tmp_path / "in", "--keep", "0:1", "-o", tmp_path / "in"), "inside the input folder")
    holding = corpus["sub/b.jsonl"].parent
    one_line_error(run("filter", corpus["sub/b.jsonl"], "--keep", "0:1", "-o", holding), "holds the input")
    one_line_error(run("filter", tmp_path / "in" / "sub" / "*.jsonl", "--keep", "0:1", "-o", tmp_path), "holds the")
    assert read_rows(corpus["sub/b.jsonl"])[0]["id"] == "sub/b.jsonl-0"  # untouched
