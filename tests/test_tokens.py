"""`gptloss tokens`: per-token values against log_softmax of the model's own logits, offsets, formats, HTML."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ARCHS, run

from gptloss_cli.core.plan import WindowSettings
from gptloss_cli.core.windows import plan_windows
from gptloss_cli.inputs.document import Document
from gptloss_cli.models.tokenizer import Tokenizer, _decode_pieces
from gptloss_cli.tasks.tokens import TokenRun, word_records

TOP_K = 5
AWKWARD = (
    "Family: 👩\u200d👩\u200d👧 and 🧿; accents: e\u0301te\u0301 vs été; 中文字符; "
    "שלום עולם (right to left); ﬁ ligature; tab\there\r\nend \x07 ok"
)
RECORD_KEYS = {
    "index",
    "token_id",
    "token",
    "start",
    "end",
    "logprob",
    "nll",
    "bits",
    "prob",
    "rank",
    "entropy",
    "context",
    "top",
}


def collect(lm, docs: list[Document], settings: WindowSettings, top_k: int = TOP_K, unit: str = "token"):
    token_run = TokenRun(lm, docs, settings, top_k=top_k, unit=unit)
    out: list[list[dict]] = [[] for _ in docs]
    for chunk in token_run.chunks():
        out[chunk.doc].extend(r.to_dict() for r in chunk.records)  # the JSON records: the typed ones, serialised
    return token_run, out


@pytest.mark.parametrize("arch", [*ARCHS, "llama-nobos"])
@pytest.mark.parametrize(("max_length", "stride"), [(128, 128), (9, 4)])
def test_values_against_log_softmax_of_model_logits(loaded, arch: str, max_length: int, stride: int) -> None:
    """logprob, rank, entropy and top-k of every token equal those of log_softmax(model logits), window by window."""
    lm = loaded[arch]
    doc = Document("The cat sat on the mat. Perplexity is the exponential of the mean NLL.", "t")
    token_run, (records,) = collect(lm, [doc], WindowSettings(max_length=max_length, stride=stride, batch_size=2))
    tokens = token_run.tokenized[0]
    bos = lm.tokenizer.bos_token_id
    prefix = [] if bos is None else [bos]
    expected: dict[int, tuple[torch.Tensor, int]] = {}
    for w in plan_windows(0, len(tokens), max_length, stride, bos is not None):
        ids = torch.tensor([prefix + tokens.ids[w.start : w.end].tolist()])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), -1)  # (T, V)
        for i in range(w.score_start, w.end):
            pos = len(prefix) + i - w.start
            expected[i] = (logp[pos - 1], int(ids[0, pos]))
    assert [r["index"] for r in records] == sorted(expected)
    for r in records:
        logp, target = expected[r["index"]]
        assert set(r) == RECORD_KEYS
        assert r["token_id"] == target
        assert math.isclose(r["logprob"], logp[target].item(), abs_tol=1e-5)
        assert math.isclose(r["bits"], -logp[target].item() / math.log(2), abs_tol=2e-5)
        assert math.isclose(r["prob"], logp[target].exp().item(), rel_tol=1e-4)
        assert math.isclose(r["entropy"], -(logp.exp() * logp).sum().item(), abs_tol=1e-4)
        above = int((logp > logp[target]).sum())
        near = int(((logp - logp[target]).abs() < 1e-5).sum()) - 1  # ties within float32 noise
        assert abs(r["rank"] - (1 + above)) <= near
        top_lp, top_ids = logp.topk(TOP_K)
        assert [t["token_id"] for t in r["top"]] == top_ids.tolist()
        np.testing.assert_allclose([t["logprob"] for t in r["top"]], top_lp.numpy(), atol=1e-5)
        assert r["top"][0]["logprob"] >= r["logprob"] - 1e-6
        assert (r["rank"] == 1) == (top_ids[0].item() == target) or near > 0


@pytest.mark.parametrize("arch", ["gpt2", "gemma3", "llama-nobos"])
def test_offsets_cover_the_text_exactly(loaded, arch: str) -> None:
    lm = loaded[arch]
    doc = Document(AWKWARD, "awkward")
    token_run, (records,) = collect(lm, [doc], WindowSettings(max_length=16, stride=7))
    for r in records:
        assert AWKWARD[r["start"] : r["end"]] == r["token"]
    starts, ends = token_run.tokenized[0].owned_spans()
    assert "".join(AWKWARD[s:e] for s, e in zip(starts, ends, strict=True)) == AWKWARD
    if lm.tokenizer.bos_token_id is not None:  # every token scored: the records alone rebuild the text
        assert "".join(r["token"] for r in records) == AWKWARD
    shared = [r for r in records if r["start"] == r["end"]]  # byte pieces after the first of a character
    assert shared, "the byte-level tokenizer should split some of these characters into several tokens"


def test_words_sum_their_tokens(loaded) -> None:
    lm = loaded["llama"]
    doc = Document("  The cat\n\nsat on   the mat.\n", "w")
    token_run, (token_recs,) = collect(lm, [doc], WindowSettings(max_length=6, stride=3))
    _, (words,) = collect(lm, [doc], WindowSettings(max_length=6, stride=3), unit="word")
    assert [w["word"] for w in words] == ["The", "cat", "sat", "on", "the", "mat."]
    for w in words:
        assert doc.text[w["start"] : w["end"]] == w["word"]
    assert math.isclose(sum(w["nll"] for w in words), sum(r["nll"] for r in token_recs), rel_tol=1e-9)
    assert sum(w["tokens"] for w in words) == len(token_run.tokenized[0])
    tokens = token_run.tokenized[0]
    positions = np.array([r["index"] for r in token_recs])
    assert word_records(tokens, positions[:0], np.zeros(0)) == []


def test_in_order_streaming_equals_sorted_batches(loaded) -> None:
    from gptloss_cli.tasks.score import score_documents

    lm = loaded["gemma3"]
    docs = [Document("short one", "a"), Document("a longer text, " * 12, "b"), Document("", "c")]
    settings = WindowSettings(max_length=12, stride=5, batch_size=3)
    chunks = list(TokenRun(lm, docs, settings, top_k=TOP_K).chunks())
    records = [[r.to_dict() for c in chunks if c.doc == i for r in c.records] for i in range(len(docs))]
    totals = [c.totals for c in chunks if c.done]  # each document's last chunk, in document order
    scored = score_documents(lm, docs, settings)
    for recs, doc_score, doc_totals in zip(records, scored.documents, totals, strict=True):
        np.testing.assert_allclose([r["nll"] for r in recs], doc_score.losses.nll, rtol=1e-6, atol=1e-7)
        assert doc_totals is not None and doc_totals.tokens_scored == doc_score.totals.tokens_scored
        assert doc_totals.bytes == doc_score.totals.bytes


def test_pieces_from_the_tokenizer_process_match_in_process(model_dirs) -> None:
    from tokenizers import Tokenizer as Backend

    path = model_dirs["gpt2"]
    backend = Backend.from_file(str(path / "tokenizer.json"))
    ids = list(range(backend.get_vocab_size()))
    child = Tokenizer.from_dir(path, bos_token_id=1)
    assert child._worker is not None
    assert child.pieces(ids) == _decode_pieces(backend, ids)
    assert child.encode("naïve café")[0].tolist() == backend.encode("naïve café", add_special_tokens=False).ids
    assert child._worker is not None  # still served by the child


def test_cli_json_sums_to_score(model_dirs, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("Perplexity is the exponential of the mean negative log-likelihood. " * 3, encoding="utf-8")
    common = ("--model", model_dirs["gemma3"], "--max-length", 20, "--stride", 9)
    score = run("score", path, *common, "--format", "json")
    tokens = run("tokens", path, *common, "--format", "json")
    assert score.exit_code == 0 and tokens.exit_code == 0, tokens.stderr
    assert tokens.stderr == ""
    data = json.loads(tokens.stdout)
    assert set(data) == {"schema", "model", "settings", "documents"}
    assert data["schema"] == "gptloss.tokens/v1" and data["settings"]["top_k"] == TOP_K
    records = data["documents"][0]["tokens"]
    total = json.loads(score.stdout)["total"]
    assert len(records) == total["tokens_scored"]
    assert math.isclose(sum(r["nll"] for r in records), total["nll_sum"], rel_tol=1e-6)


def test_cli_jsonl_csv_and_no_top(model_dirs, tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("The cat sat on the mat.", encoding="utf-8")
    b.write_text("Zählt die Wörter, naïve café.", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run("tokens", a, b, "--model", model_dirs["llama"], "-f", "jsonl", "--top-k", 0, "-o", out)
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["schema"] == "gptloss.tokens/v1" and "documents" not in lines[0]
    assert {line["source"] for line in lines[1:]} == {str(a), str(b)}
    assert all(line["top"] == [] for line in lines[1:])
    indexes = [line["index"] for line in lines[1:] if line["source"] == str(b)]
    assert indexes == list(range(len(indexes)))  # in order, every token (BOS: the first is scored too)
    result = run("tokens", a, b, "--model", model_dirs["llama"], "-f", "csv", "--top-k", 2)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(lines) - 1
    assert all(len(json.loads(row["top"])) == 2 for row in rows)
    assert "".join(row["token"] for row in rows if row["source"] == str(b)) == b.read_text(encoding="utf-8")


def test_cli_heatmap_without_colour_and_word_table(model_dirs, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("The cat sat on the mat.\x1b[31m", encoding="utf-8")
    result = run("tokens", path, "--model", model_dirs["gpt2"], "-f", "heatmap")
    assert result.exit_code == 0, result.stderr
    assert "no colour" in result.stdout and "\u27e6" in result.stdout  # not a terminal: surprising tokens bracketed
    assert "\x1b" not in result.stdout and "\u241b" in result.stdout  # an escape in the text is shown, not sent
    result = run("tokens", path, "--model", model_dirs["gpt2"], "--unit", "word")
    assert result.exit_code == 0, result.stderr
    assert "mat." in result.stdout and "tokens" in result.stdout


def test_cli_errors_are_one_line(model_dirs, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    result = run("tokens", empty, "--model", model_dirs["gpt2"])
    assert result.exit_code == 1 and "nothing to score" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    text = tmp_path / "t.txt"
    text.write_text("hello", encoding="utf-8")
    result = run("tokens", text, "--model", model_dirs["gpt2"], "--html", tmp_path / "nope" / "r.html")
    assert result.exit_code == 1 and "does not exist" in result.stderr
    result = run("tokens", text, "--model", model_dirs["gpt2"], "--top-k", -1)
    assert result.exit_code != 0


HOSTILE = 'a <script>alert("x")</script> </span></div> & "quotes" \'single\' <img src=x onerror=alert(1)>'


def _report(model_dirs, tmp_path: Path) -> tuple[Path, list[dict]]:
    src = tmp_path / "hostile.txt"
    src.write_text(HOSTILE, encoding="utf-8")
    report, records = tmp_path / "report.html", tmp_path / "records.json"
    result = run("tokens", src, "--model", model_dirs["gpt2"], "--html", report)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and "wrote" in result.stderr
    result = run("tokens", src, "--model", model_dirs["gpt2"], "-f", "json", "-o", records)
    assert result.exit_code == 0, result.stderr
    return report, json.loads(records.read_text(encoding="utf-8"))["documents"][0]["tokens"]


def test_html_escapes_everything_and_is_self_contained(model_dirs, tmp_path: Path) -> None:
    page = _report(model_dirs, tmp_path)[0].read_text(encoding="utf-8")
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;" in page and "&lt;/span&gt;" in page and "&amp;" in page and "&quot;quotes&quot;" in page
    assert re.search(r"<[^>]*\s(src|href)=", page) is None  # no attribute that loads anything
    assert "<link" not in page and "url(" not in page and "@import" not in page
    assert re.findall(r"https?:", page) == ["http:"] and 'xmlns="http://www.w3.org/2000/svg"' in page


def test_html_in_a_real_browser(model_dirs, tmp_path: Path) -> None:
    """Chromium parses and lays out the report; its DOM holds no script or image, and the text is intact."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium (Debian: apt-get install chromium) for the HTML test")
        pytest.skip("no chromium to render the report")
    report, records = _report(model_dirs, tmp_path)
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", report.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    walk = _Walk()
    walk.feed(dom)
    assert walk.tags and "script" not in walk.tags and "img" not in walk.tags
    assert "".join(walk.text) == HOSTILE  # the document's text, intact, as text
    assert walk.token_spans == len(records)


class _Walk(HTMLParser):
    """Tags of a serialised DOM, and the text and token spans inside the .text block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.depth = 0  # > 0 inside the .text block
        self.text: list[str] = []
        self.token_spans = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if self.depth:
            self.depth += 1
            self.token_spans += tag == "span" and dict(attrs).get("class") == "t"
        elif dict(attrs).get("class") == "text":
            self.depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text.append(data)


def test_streamed_output_is_whole_or_absent(model_dirs, tmp_path: Path, monkeypatch) -> None:
    from gptloss_cli.tasks import tokens as records

    path = tmp_path / "t.txt"
    path.write_text("The cat sat on the mat. " * 8, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    common = ("--model", model_dirs["gpt2"], "--max-length", 8, "-f", "jsonl", "-o", out)
    original = records.TokenRun.chunks

    def failing(self, progress=None):
        for i, chunk in enumerate(original(self, progress)):
            if i == 2:
                raise RuntimeError("disk on fire")
            yield chunk

    monkeypatch.setattr(records.TokenRun, "chunks", failing)
    result = run("tokens", path, *common)
    assert result.exit_code == 1 and "disk on fire" in result.stderr
    assert list(tmp_path.iterdir()) == [path]  # neither the output nor its temporary file
    monkeypatch.setattr(records.TokenRun, "chunks", original)
    result = run("tokens", path, *common)
    assert result.exit_code == 0, result.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_byte_pieces_belong_to_their_own_word(loaded) -> None:
    """Tokens that share a character (byte pieces) count towards the word holding that character."""
    from gptloss_cli.core.windows import tokenize
    from gptloss_cli.core.words import word_owner

    lm = loaded["gpt2"]
    doc = Document("😀 hi 中文 there é\n\nx🧿y end", "w")
    tokens = tokenize(lm.tokenizer, doc)
    words, owner = word_owner(tokens)
    raw_start, raw_end = lm.tokenizer.encode(doc.text)[1].T  # the tokenizer's own offsets
    assert len(set(zip(raw_start.tolist(), raw_end.tolist(), strict=True))) < len(tokens)  # pieces share chars
    for i in range(len(tokens)):
        chars = [c for c in range(raw_start[i], raw_end[i]) if not doc.text[c].isspace()]
        if chars:
            s, e = words[owner[i]]
            assert s <= chars[-1] < e, (i, doc.text[raw_start[i] : raw_end[i]])


def test_text_that_looks_like_markup_is_shown_as_is(model_dirs, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    name = "[red]odd:smile:.txt"
    Path(name).write_text("[/quote] :smile: [link](http://x) [bold]x", encoding="utf-8")
    gpt2, llama = model_dirs["gpt2"], model_dirs["llama"]
    for args in (
        ["tokens", name, "--unit", "word", "--model", gpt2],
        ["tokens", name, "--model", gpt2],
        ["score", name, "--model", gpt2],
        ["compare", gpt2, llama, name, "--top", 3],
    ):
        result = run(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert name in result.stdout
    result = run("tokens", "--unit", "word", name, "--model", gpt2)
    assert "[/quote]" in result.stdout and ":smile:" in result.stdout and "[link](http://x)" in result.stdout
