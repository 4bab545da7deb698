"""annotate: every row kept in order with its columns, score columns equal to `score` of the row's text, a stopped
run resumed to the uninterrupted output, the same numbers on two ranks and two shards, one line for bad input."""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import BATCH_RTOL, launch, one_line_error, run, usage_error

SCORES = ["gptloss_tokens", "gptloss_nll_sum", "gptloss_mean_nll", "gptloss_perplexity", "gptloss_bits_per_byte"]
MEMBERSHIP = ["gptloss_min_k", "gptloss_min_k_plus_plus", "gptloss_zlib_ratio"]
TEXTS = [
    "The cat sat on the mat. The dog sat on the log. " * 5,
    None,
    "Perplexity is the exponential of the mean negative log-likelihood.",
    "",
    "Zählt die Wörter, 42 Äpfel und 7 Birnen; naïve café. " * 3,
    "1. screws: 312\n2. bolts: 48\n3. glue: 3 bottles\n",
    "def plan(length, size, step):\n    return [range(i, i + size) for i in range(0, length, step)]\n",
    "a",
]
WINDOWS = ("--max-length", 24, "--stride", 12, "--batch-size", 3)


def rows(n: int = len(TEXTS)) -> list[dict[str, Any]]:
    """Rows with columns of mixed types: ints, floats, nulls, nested lists and records."""
    return [
        {
            "id": i,
            "text": TEXTS[i % len(TEXTS)],
            "weight": None if i % 3 == 0 else i / 7,
            "tags": None if i % 4 == 1 else [f"t{i}", f"u{i}"][: i % 3],
            "meta": {"k": i, "path": [i, None]},
        }
        for i in range(n)
    ]


def write_corpus(root: Path, data: list[dict[str, Any]]) -> None:
    """The same rows as a Parquet file, a JSON Lines file and a gzipped one (in a sub-folder)."""
    (root / "sub").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(data), root / "a.parquet")
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data)
    (root / "b.jsonl").write_text(lines, encoding="utf-8")
    with gzip.open(root / "sub" / "c.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(lines)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    write_corpus(root, rows())
    return root


def annotate(model: Path, *args: object) -> Any:
    result = run("annotate", *args, "-m", model, *WINDOWS)
    assert result.exit_code == 0, result.stderr
    return result


def score_texts(model: Path, tmp_path: Path, texts: list[str], *extra: object) -> list[dict[str, Any]]:
    """`score` of these texts as the records of a dataset (their documents, in order)."""
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    result = run("score", "--dataset", data, "-m", model, *WINDOWS, *extra, "-f", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["documents"]


def test_every_row_keeps_its_place_and_columns_and_gets_score_s_numbers(model_dirs, corpus, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = annotate(model_dirs["llama"], corpus, "-o", out)
    original = rows()
    expected = score_texts(model_dirs["llama"], tmp_path, [t for t in TEXTS if t])
    for name in ("a.parquet", "b.jsonl", "sub/c.jsonl.gz"):
        got = read_rows(out / name)
        assert len(got) == len(original)
        scored = iter(expected)
        for row, before in zip(got, original, strict=True):
            assert list(row)[: len(before)] == list(before)  # the columns, in their order, then the scores
            assert {k: row[k] for k in before} == before
            assert list(row)[len(before) :] == [*SCORES, "gptloss_error"]
            if not before["text"]:
                assert all(row[k] is None for k in SCORES)
                assert row["gptloss_error"] == ("column 'text' is null" if before["text"] is None else "empty text")
                continue
            doc = next(scored)  # one chunk, batched as score batches the same documents: the same bits
            assert row["gptloss_error"] is None
            assert row["gptloss_tokens"] == doc["tokens_scored"]
            for column, key in zip(SCORES[1:], ("nll_sum", "mean_nll", "perplexity", "bits_per_byte"), strict=True):
                assert math.isclose(row[column], doc[key], rel_tol=1e-9), (column, row[column], doc[key])
    parquet = pq.read_schema(out / "a.parquet")
    assert parquet.field("gptloss_tokens").type == pa.int64() and parquet.field("gptloss_error").type == pa.string()
    assert pq.read_schema(corpus / "a.parquet").equals(pa.schema(list(parquet)[: len(original[0])]))
    assert "total (3 files)" in result.stdout and "row perplexity quantiles" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [".gptloss-annotate", "a.parquet", "b.jsonl", "sub"]


def test_chunks_give_the_one_chunk_numbers_and_a_report(model_dirs, corpus, tmp_path: Path) -> None:
    one = tmp_path / "one"
    annotate(model_dirs["llama"], corpus / "b.jsonl", "-o", one)
    many = tmp_path / "many"
    report = tmp_path / "report.json"
    annotate(model_dirs["llama"], corpus / "b.jsonl", "-o", many, "--chunk-rows", 3, "--report", report)
    assert_same_rows(read_rows(many / "b.jsonl"), read_rows(one / "b.jsonl"), BATCH_RTOL)
    summary = json.loads(report.read_text())
    values = [r["gptloss_perplexity"] for r in read_rows(many / "b.jsonl") if r["gptloss_perplexity"] is not None]
    import numpy as np

    assert summary["rows"] == len(TEXTS) and summary["errors"] == 2
    assert summary["tokens"] == sum(r["gptloss_tokens"] or 0 for r in read_rows(many / "b.jsonl"))
    for q in (10, 30, 50, 70, 90):
        assert summary["perplexity_quantiles"][f"p{q}"] == pytest.approx(np.quantile(values, q / 100), rel=1e-12)


def assert_same_rows(got: list[dict[str, Any]], expected: list[dict[str, Any]], rel: float) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys()
        for key, value in e.items():
            if isinstance(value, float) and key.startswith("gptloss_"):
                assert math.isclose(g[key], value, rel_tol=rel), (key, g[key], value)
            else:
                assert g[key] == value, key


def test_a_stopped_run_resumes_to_the_uninterrupted_output(model_dirs, corpus, tmp_path: Path, monkeypatch) -> None:
    from gptloss_cli.tasks import annotate as task
    from gptloss_cli.tasks.rows import RowScorer

    whole = tmp_path / "whole"
    annotate(model_dirs["llama"], corpus, "-o", whole, "--chunk-rows", 3)
    out = tmp_path / "out"
    write = task.Annotation._write_chunk
    calls = {"n": 0}

    def crashes(self: Any, *args: Any) -> Any:  # the run dies while writing its 5th chunk
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return write(self, *args)

    monkeypatch.setattr(task.Annotation, "_write_chunk", crashes)
    stopped = run("annotate", corpus, "-o", out, "--chunk-rows", 3, "-m", model_dirs["llama"], *WINDOWS)
    assert stopped.exit_code == 130
    # a.parquet (3 chunks) is done; b.jsonl has 1 of its 3 chunks; c.jsonl.gz is not begun
    assert (out / "a.parquet").exists() and not (out / "b.jsonl").exists() and not (out / "sub").exists()
    state = out / ".gptloss-annotate"
    assert sorted(p.name for p in (state / "b.jsonl.chunks").iterdir()) == [
        "000000.json",
        "000000.jsonl",
        "manifest.json",
    ]
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(task.Annotation, "_write_chunk", write)
    (out / ".b.jsonl.x1y2.tmp").write_text("half an output, as kill -9 leaves it")
    (state / "b.jsonl.chunks" / ".000001.jsonl.z3.tmp").write_text("half a chunk")
    scored = []
    score = RowScorer.score

    def counted(self: Any, records: Any, *args: Any) -> Any:
        scored.append(len(records))
        return score(self, records, *args)

    monkeypatch.setattr(RowScorer, "score", counted)
    annotate(model_dirs["llama"], corpus, "-o", out, "--chunk-rows", 3, "--resume")
    assert scored == [3, 2, 3, 3, 2]  # b.jsonl's last two chunks, then c.jsonl.gz: nothing done twice
    for name in ("a.parquet", "b.jsonl", "sub/c.jsonl.gz"):
        assert read_rows(out / name) == read_rows(whole / name)  # to the bit: each chunk is batched alone
    assert not (state / "b.jsonl.chunks").exists() and (state / "b.jsonl.done.json").exists()
    assert not list(out.rglob("*.tmp"))  # what the killed run left is gone


def test_resume_refuses_other_settings_or_a_changed_input(model_dirs, corpus, tmp_path: Path) -> None:
    out = tmp_path / "out"
    annotate(model_dirs["llama"], corpus / "b.jsonl", "-o", out)
    again = ("annotate", corpus / "b.jsonl", "-o", out, "--resume", "-m", model_dirs["llama"])
    one_line_error(run(*again, "--max-length", 16, "--stride", 12, "--batch-size", 3), "max_length", "(24, now 16)")
    one_line_error(run(*again, *WINDOWS, "--membership"), "another analyses")
    one_line_error(run(*again, *WINDOWS[:4], "--batch-size", 2), "another batch_size")
    gpt2 = run("annotate", corpus / "b.jsonl", "-o", out, "--resume", "-m", model_dirs["gpt2"], *WINDOWS)
    one_line_error(gpt2, "another model spec")
    os.utime(corpus / "b.jsonl", ns=(1, 1))
    one_line_error(run(*again, *WINDOWS), "b.jsonl changed since")


def test_membership_columns_equal_score_s(model_dirs, corpus, tmp_path: Path) -> None:
    out = tmp_path / "out"
    annotate(model_dirs["llama"], corpus / "a.parquet", "-o", out, "--membership")
    got = [r for r in read_rows(out / "a.parquet") if r["text"]]
    expected = score_texts(model_dirs["llama"], tmp_path, [t for t in TEXTS if t], "--membership")
    for row, doc in zip(got, expected, strict=True):
        member = doc["membership"]
        for column, key in zip(MEMBERSHIP, ("min_k_prob", "min_k_plus_plus", "zlib_ratio"), strict=True):
            assert row[column] == pytest.approx(member[key], rel=1e-9, abs=0) if member[key] is not None else True


def test_prompt_and_completion_mask_each_row(model_dirs, tmp_path: Path) -> None:
    data = [
        {"q": "Question: what is two and two?", "a": " Four."},
        {"q": "Say nothing.", "a": ""},
        {"q": None, "a": " x"},
        {"q": "Name a colour.", "a": " Blue, like the sea."},
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    annotate(
        model_dirs["llama"], tmp_path / "in", "-o", tmp_path / "out", "--prompt-column", "q", "--completion-column", "a"
    )
    got = read_rows(tmp_path / "out" / "qa.jsonl")
    assert [r["gptloss_error"] for r in got] == [None, "nothing to score after the mask", "column 'q' is null", None]
    kept = tmp_path / "kept.jsonl"
    kept.write_text("".join(json.dumps(r) + "\n" for r in (data[0], data[3])))
    result = run(
        "score", "--dataset", kept, "--prompt-column", "q", "--completion-column", "a", "-m", model_dirs["llama"],
        *WINDOWS, "-f", "json",
    )  # fmt: skip
    expected = json.loads(result.stdout)["documents"]
    for row, doc in zip((got[0], got[3]), expected, strict=True):
        assert row["gptloss_tokens"] == doc["tokens_scored"]
        assert math.isclose(row["gptloss_nll_sum"], doc["nll_sum"], rel_tol=1e-9)


def test_attribute_files_hold_the_id_and_the_scores(model_dirs, corpus, tmp_path: Path) -> None:
    full, attributes = tmp_path / "full", tmp_path / "attributes"
    annotate(model_dirs["llama"], corpus / "a.parquet", corpus / "b.jsonl", "-o", full)
    annotate(model_dirs["llama"], corpus / "a.parquet", corpus / "b.jsonl", "-o", attributes, "--attributes")
    for name in ("a.parquet", "b.jsonl"):
        expected = [{k: r[k] for k in ("id", *SCORES, "gptloss_error")} for r in read_rows(full / name)]
        assert read_rows(attributes / name) == expected


def test_an_empty_file_gives_an_empty_output_with_the_columns(model_dirs, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    pq.write_table(
        pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}), tmp_path / "in/e.parquet"
    )
    (tmp_path / "in" / "e.jsonl").write_text("")
    annotate(model_dirs["llama"], tmp_path / "in", "-o", tmp_path / "out")
    schema = pq.read_schema(tmp_path / "out" / "e.parquet")
    assert schema.names == ["id", "text", *SCORES, "gptloss_error"]
    assert (tmp_path / "out" / "e.jsonl").read_text() == ""


def test_two_ranks_and_two_shards_give_one_process_numbers(model_dirs, corpus, tmp_path: Path) -> None:
    common = ("-m", model_dirs["llama"], *WINDOWS, "--chunk-rows", 3)
    annotate(model_dirs["llama"], corpus, "-o", tmp_path / "one", "--chunk-rows", 3)
    two = launch(2, "annotate", corpus, "-o", tmp_path / "two", *common)
    assert two.returncode == 0, two.stderr
    for shard in ("0/2", "1/2"):
        annotate(model_dirs["llama"], corpus, "-o", tmp_path / "shards", "--chunk-rows", 3, "--shard", shard)
    from gptloss_cli.files import Outputs

    with Outputs(("--output", tmp_path / "shards" / ".gptloss-annotate" / "run-0-of-2")) as held:
        held.take([])  # shard 0 still running: shard 1 may write into the same folder, another shard 0 not
        annotate(model_dirs["llama"], corpus, "-o", tmp_path / "shards", "--chunk-rows", 3, "--shard", "1/2")
        again = run("annotate", corpus, "-o", tmp_path / "shards", "--shard", "0/2", "-m", model_dirs["llama"])
        one_line_error(again, "another gptloss run is writing it")
    for name in ("a.parquet", "b.jsonl", "sub/c.jsonl.gz"):
        expected = read_rows(tmp_path / "one" / name)
        assert_same_rows(read_rows(tmp_path / "two" / name), expected, BATCH_RTOL)
        assert read_rows(tmp_path / "shards" / name) == expected  # a file is scored as one process scores it


def test_shards_deal_whole_files_by_size() -> None:
    from gptloss_cli.core.distributed import Shard
    from gptloss_cli.inputs.corpus import CorpusFile
    from gptloss_cli.tasks.annotate import deal_files

    class Sized(CorpusFile):
        @property
        def size(self) -> int:
            return int(self.relative)

    files = [Sized(Path(f"/f{i}"), str(s), "jsonl") for i, s in enumerate([5, 40, 7, 30, 9])]
    shares = [[f.relative for f in deal_files(files, Shard(i, 2))] for i in range(2)]
    assert shares == [
        ["5", "40"],
        ["7", "30", "9"],
    ]  # largest first to the lighter share (40, 30, 9, 7, 5), in input order


def test_bad_input_gets_one_line(model_dirs, corpus, tmp_path: Path) -> None:
    model = ("-m", model_dirs["llama"])
    out = tmp_path / "out"
    (tmp_path / "notes.csv").write_text("a,b\n")
    one_line_error(run("annotate", tmp_path / "notes.csv", "-o", out, *model), "notes.csv: neither Parquet nor JSON")
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet")
    one_line_error(run("annotate", fake, "-o", out, *model), "fake.parquet: not a readable Parquet file")
    one_line_error(
        run("annotate", corpus / "a.parquet", "-o", out, "--text-column", "body", *model),
        "no column 'body'",
        "its columns: id, text, weight, tags, meta",
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": oops}\n[1, 2]\n{"text": "also fine"}\n')
    one_line_error(run("annotate", bad, "-o", out, *model), "bad.jsonl:2: not valid JSON", "--on-bad-line skip")
    assert not (out / "bad.jsonl").exists()
    skipped = run("annotate", bad, "-o", out, *model, "--on-bad-line", "skip", "--report", tmp_path / "r.json")
    assert skipped.exit_code == 0, skipped.stderr
    assert [r["text"] for r in read_rows(out / "bad.jsonl")] == ["fine", "also fine"]
    assert json.loads((tmp_path / "r.json").read_text())["bad_lines"] == 2
    assert "left out 2 malformed line(s); the first: " in skipped.stderr
    one_line_error(run("annotate", corpus, "-o", corpus / "out", *model), "inside the input folder")
    one_line_error(run("annotate", corpus, "-o", tmp_path / "no" / "such", *model), "does not exist")
    one_line_error(run("annotate", tmp_path / "missing.jsonl", "-o", out, *model), "no such file or folder")
    annotated = out / "bad.jsonl"
    one_line_error(run("annotate", annotated, "-o", tmp_path / "again", *model), "already has a column")
    usage_error(run("annotate", corpus, "-o", out, *model, "--workers", 2), "--engine ray")
    too_big = run("annotate", corpus, "-o", out, *model, "--chunk-rows", 10_001)  # the parser's own message
    assert too_big.exit_code == 2 and "--chunk-rows" in too_big.stderr
    usage_error(run("annotate", corpus, "-o", out, *model, "--shard", "2/2"), "--shard 2/2")
    usage_error(run("annotate", corpus, "-o", out, *model, "--prompt-column", "q"), "--completion-column")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if not os.access(readonly, os.W_OK):  # root writes anywhere
            one_line_error(run("annotate", corpus, "-o", readonly, *model), "cannot write")
    finally:
        readonly.chmod(0o700)


def test_chats_are_rendered_and_masked_per_row(model_dirs, tmp_path: Path) -> None:
    from test_dataset import CHATML, CHATS

    template = tmp_path / "chatml.jinja"
    template.write_text(CHATML, encoding="utf-8")
    data = [{"messages": CHATS[0]}, {"messages": [{"role": "user"}]}, {"messages": CHATS[1]}]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    chat = ("--messages-column", "messages", "--chat-template", template)
    annotate(model_dirs["llama"], tmp_path / "in", "-o", tmp_path / "out", *chat)
    got = read_rows(tmp_path / "out" / "chat.jsonl")
    assert got[1]["gptloss_error"] == "message 1 has no text content" and got[1]["gptloss_tokens"] is None
    kept = tmp_path / "kept.jsonl"
    kept.write_text("".join(json.dumps(r) + "\n" for r in (data[0], data[2])))
    result = run("score", "--dataset", kept, *chat, "-m", model_dirs["llama"], *WINDOWS, "-f", "json")
    expected = json.loads(result.stdout)["documents"]
    for row, doc in zip((got[0], got[2]), expected, strict=True):
        assert row["gptloss_tokens"] == doc["tokens_scored"] > 0
        assert math.isclose(row["gptloss_nll_sum"], doc["nll_sum"], rel_tol=1e-9)
