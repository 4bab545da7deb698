"""--dataset input and loss masks: prompt/completion, chat roles, character spans; bootstrap; resumable runs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_totals_close, build_tokenizer, run, stopped_after, tiny_config

from gptloss_cli.core.totals import Totals, bootstrap_ci95

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
PAIRS = [
    ("The ca", "t sat on the mat."),  # " c" + "at": the token "at" straddles the boundary
    ("Perplexity is the exponential of ", "the mean negative log-likelihood."),
    ("Zählt die Wörter: ", "42 Äpfel und 7 Birnen; naïve café."),
    ("def plan(length, size, step):\n", "    return [range(i, i + size) for i in range(0, length, step)]\n"),
]
CHATS = [
    [
        {"role": "system", "content": "You count things."},
        {"role": "user", "content": "How many screws?"},
        {"role": "assistant", "content": "312 screws."},
        {"role": "user", "content": "And bolts?"},
        {"role": "assistant", "content": "48 bolts; glue: 3 bottles."},
    ],
    [{"role": "user", "content": "The cat sat on"}, {"role": "assistant", "content": "the mat."}],
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama whose tokenizer has ChatML turn markers and a chat template."""
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHATML
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", len(tokenizer)), dtype=torch.float32)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.2)
    out = tmp_path_factory.mktemp("chat") / "chat-llama"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def reference_nll(model_dir: Path, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Independent: the model's own logits on <bos> + the text's tokens -> (NLL of each token, offsets)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor([[tok.bos_token_id, *enc["input_ids"]]])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)  # (n, V)
    nll = -logprobs.gather(1, ids[0, 1:, None])[:, 0]  # (n,)
    return nll.numpy(), np.array(enc["offset_mapping"])


def test_completion_only_matches_the_models_own_logits(model_dirs, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": p, "completion": c} for p, c in PAIRS])
    result = run(
        "tokens",
        "--dataset",
        data,
        "--prompt-column",
        "prompt",
        "--completion-column",
        "completion",
        "-m",
        model_dirs["llama"],
        "--top-k",
        0,
        "-f",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    docs = json.loads(result.stdout)["documents"]
    straddling = 0
    for (prompt, completion), doc in zip(PAIRS, docs, strict=True):
        nll, offsets = reference_nll(model_dirs["llama"], prompt + completion)
        boundary = len(prompt)
        expected = [i for i, (_, end) in enumerate(offsets) if end > boundary]  # any character in the completion
        straddling += sum(1 for start, end in offsets if start < boundary < end)
        got = [t["index"] for t in doc["tokens"]]
        assert got == expected
        np.testing.assert_allclose([t["nll"] for t in doc["tokens"]], nll[expected], rtol=1e-5, atol=1e-6)
        assert math.isclose(doc["totals"]["nll_sum"], float(nll[expected].sum()), rel_tol=1e-5)
    assert straddling >= 1  # the boundary rule was exercised


def test_masked_windows_equal_the_unmasked_run_restricted(model_dirs, tmp_path: Path) -> None:
    """Loss masks do not change what the model sees: with windows of 12 and stride 5, the completion tokens
    get the same NLL as in an unmasked run of the same text (windows wholly in the prompt are skipped)."""
    records = [{"prompt": p, "completion": c, "text": p + c} for p, c in PAIRS]
    data = write_jsonl(tmp_path / "pc.jsonl", records)
    common = ("--dataset", data, "-m", model_dirs["gpt2"], "--max-length", 12, "--stride", 5, "-f", "json")
    masked = run("tokens", *common, "--prompt-column", "prompt", "--completion-column", "completion", "--top-k", 0)
    whole = run("tokens", *common, "--top-k", 0)
    assert masked.exit_code == 0 and whole.exit_code == 0, masked.stderr + whole.stderr
    for m, w, (prompt, _) in zip(
        json.loads(masked.stdout)["documents"], json.loads(whole.stdout)["documents"], PAIRS, strict=True
    ):
        kept = [t for t in w["tokens"] if t["end"] > len(prompt)]
        assert [t["index"] for t in m["tokens"]] == [t["index"] for t in kept]
        np.testing.assert_allclose([t["nll"] for t in m["tokens"]], [t["nll"] for t in kept], rtol=1e-5, atol=1e-6)
        assert [t["context"] for t in m["tokens"]] == [t["context"] for t in kept]


def test_assistant_turns_only(chat_model: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CHATS])
    result = run("tokens", "--dataset", data, "--messages-column", "messages", "-m", chat_model, "-f", "json")
    assert result.exit_code == 0, result.stderr
    tok = AutoTokenizer.from_pretrained(chat_model)
    for messages, doc in zip(CHATS, json.loads(result.stdout)["documents"], strict=True):
        text = tok.apply_chat_template(messages, tokenize=False)
        wanted, at = [], 0  # by hand: each assistant content and its <|im_end|>
        for m in messages:
            turn = f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n"
            assert text.startswith(turn, at)
            if m["role"] == "assistant":
                start = at + len(f"<|im_start|>{m['role']}\n")
                wanted.append((start, start + len(m["content"]) + len("<|im_end|>")))
            at += len(turn)
        offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        expected = [i for i, (s, e) in enumerate(offsets) if any(s < we and e > ws for ws, we in wanted)]
        assert [t["index"] for t in doc["tokens"]] == expected
        scored = "".join(t["token"] for t in doc["tokens"])
        assert all(m["content"] in scored for m in messages if m["role"] == "assistant")
        assert scored.count("<|im_end|>") == sum(m["role"] == "assistant" for m in messages)
        assert "user" not in scored and "How many" not in scored


def test_score_roles_user_and_missing_template(chat_model: Path, model_dirs, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CHATS])
    result = run(
        "tokens", "--dataset", data, "--messages-column", "messages", "--score-roles", "user", "-m", chat_model,
        "-f", "json", "--top-k", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    scored = "".join(t["token"] for t in json.loads(result.stdout)["documents"][0]["tokens"])
    assert "How many screws?" in scored and "And bolts?" in scored and "312" not in scored
    result = run("score", "--dataset", data, "--messages-column", "messages", "-m", model_dirs["llama"])
    assert result.exit_code == 1 and "has no chat template" in result.stderr and "--chat-template" in result.stderr
    template = tmp_path / "chatml.jinja"
    template.write_text(CHATML, encoding="utf-8")
    result = run(
        "score", "--dataset", data, "--messages-column", "messages", "--chat-template", template,
        "-m", model_dirs["llama"], "-f", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["total"]["tokens_scored"] > 0


def test_span_column(model_dirs, tmp_path: Path) -> None:
    text = "The cat sat on the mat. The dog sat on the log."
    spans = [[4, 7], [28, 31]]  # "cat", "dog"
    data = write_jsonl(tmp_path / "s.jsonl", [{"text": text, "spans": spans}])
    common = ("--dataset", data, "-m", model_dirs["llama"], "-f", "json", "--top-k", 0)
    result = run("tokens", *common, "--span-column", "spans")
    assert result.exit_code == 0, result.stderr
    toks = json.loads(result.stdout)["documents"][0]["tokens"]
    whole = json.loads(run("tokens", *common).stdout)["documents"][0]["tokens"]
    expected = [t for t in whole if any(t["start"] < e and t["end"] > s for s, e in spans)]
    assert [t["index"] for t in toks] == [t["index"] for t in expected] and toks
    assert "cat" in "".join(t["token"] for t in toks) and "mat" not in "".join(t["token"] for t in toks)
    write_jsonl(tmp_path / "s.jsonl", [{"text": text, "spans": [[4, 99]]}])
    result = run("score", *common[:4], "--span-column", "spans")
    assert result.exit_code == 1 and "s.jsonl:1: span [4, 99]" in result.stderr


def test_errors_are_one_line(model_dirs, tmp_path: Path) -> None:
    good = [{"prompt": p, "completion": c} for p, c in PAIRS]
    data = tmp_path / "d.jsonl"
    lines = [json.dumps(r) for r in good]
    lines.insert(2, '{"prompt": "cut short",')
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    common = ("--dataset", data, "-m", model_dirs["llama"], "--prompt-column", "prompt")
    result = run("score", *common, "--completion-column", "completion")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "d.jsonl line 3: not valid JSON" in result.stderr and "--skip-bad-records" in result.stderr
    result = run("score", *common, "--completion-column", "completion", "--skip-bad-records", "-f", "json")
    assert result.exit_code == 0 and "skipped 1 bad record" in result.stderr
    assert json.loads(result.stdout)["total"]["documents"] == len(good)
    result = run("score", *common, "--completion-column", "answer")
    assert result.exit_code == 1 and "no column 'answer'; available columns: prompt, completion" in result.stderr
    result = run(
        "score", *common, "--completion-column", "completion", "--limit", 2, "--skip-bad-records", "-f", "json"
    )
    assert [d["source"] for d in json.loads(result.stdout)["documents"]] == ["d.jsonl:1", "d.jsonl:2"]
    for args, message in [
        (("--dataset", data, "--prompt-column", "p"), "--prompt-column and --completion-column go together"),
        (("--text-column", "t", tmp_path / "x.txt"), "--text-column needs --dataset"),
        (("--dataset", data, data), "give files or --dataset, not both"),
        (("--dataset", tmp_path / "none.jsonl"), "none.jsonl: no such file or folder"),
        (("--dataset", data, "--resume"), "--resume needs --output"),
    ]:
        result = run("score", "-m", model_dirs["llama"], *args)
        assert result.exit_code != 0 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_hub_dataset_offline_is_one_line(model_dirs, monkeypatch) -> None:
    from gptloss_cli.inputs import dataset

    monkeypatch.setattr(dataset, "hub_reachable", lambda: False)
    result = run("score", "--dataset", "someone/no-such-dataset", "-m", model_dirs["llama"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "someone/no-such-dataset" in result.stderr and "hub cannot be reached" in result.stderr


def test_csv_and_parquet_through_datasets(model_dirs, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [p + c for p, c in PAIRS]
    csv = tmp_path / "d.csv"
    csv.write_text("id,body\n" + "".join(f'{i},"{t.replace(chr(34), "")}"\n' for i, t in enumerate(texts[:3])))
    pq.write_table(pa.table({"body": texts}), tmp_path / "d.parquet")
    jsonl = write_jsonl(tmp_path / "d.jsonl", [{"body": t} for t in texts])
    out = {}
    for path in (csv, tmp_path / "d.parquet", jsonl):
        result = run("score", "--dataset", path, "--text-column", "body", "-m", model_dirs["llama"], "-f", "json")
        assert result.exit_code == 0, result.stderr
        out[path.suffix] = json.loads(result.stdout)["documents"]
    streamed = run(
        "score", "--dataset", tmp_path / "d.parquet", "--text-column", "body", "--streaming", "--limit", 3,
        "-m", model_dirs["llama"], "-f", "json",
    )  # fmt: skip
    assert streamed.exit_code == 0, streamed.stderr
    for got, expected in zip(json.loads(streamed.stdout)["documents"], out[".parquet"][:3], strict=True):
        assert_totals_close(got, expected)  # 3 streamed records batch otherwise than 4 prepared ones
    assert [d["source"] for d in out[".parquet"]] == [f"d.parquet[{i}]" for i in range(4)]
    assert [d["nll_sum"] for d in out[".parquet"]] == pytest.approx([d["nll_sum"] for d in out[".jsonl"]], rel=1e-9)
    assert len(out[".csv"]) == 3


def test_batched_equals_one_at_a_time(model_dirs, tmp_path: Path) -> None:
    records = [{"prompt": p, "completion": c} for p, c in PAIRS * 3]
    data = write_jsonl(tmp_path / "pc.jsonl", records)
    common = ("--dataset", data, "--prompt-column", "prompt", "--completion-column", "completion", "-f", "json")
    one = run("score", *common, "-m", model_dirs["gemma3"], "--batch-size", 1)
    many = run("score", *common, "-m", model_dirs["gemma3"], "--batch-size", 8)
    a, b = json.loads(one.stdout)["documents"], json.loads(many.stdout)["documents"]
    assert [d["tokens_scored"] for d in a] == [d["tokens_scored"] for d in b]
    assert [d["nll_sum"] for d in a] == pytest.approx([d["nll_sum"] for d in b], rel=1e-6)


def test_bootstrap_is_seeded_and_brackets_the_corpus_ppl() -> None:
    rng = np.random.default_rng(1)
    parts = [Totals.from_nll(rng.gamma(2.0, 1.5, size=rng.integers(5, 60)), 100, 20) for _ in range(40)]
    total = Totals.combine(parts)
    first = bootstrap_ci95(parts, 500, seed=7)
    assert first == bootstrap_ci95(parts, 500, seed=7)
    assert first != bootstrap_ci95(parts, 500, seed=8)
    assert first is not None and first[0] < (total.perplexity or 0) < first[1]
    # by hand: the same resamples, each the exp of (sum of NLL sums) / (sum of token counts)
    counts = np.random.default_rng(7).multinomial(40, np.full(40, 1 / 40), size=500)  # (500, 40)
    n = np.array([t.tokens_scored for t in parts])
    s = np.array([t.nll_sum for t in parts])
    low, high = np.exp(np.percentile(counts @ s / (counts @ n), [2.5, 97.5]))
    assert first == pytest.approx((low, high), rel=1e-12)


def test_bootstrap_in_score_json(model_dirs, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": p + c} for p, c in PAIRS])
    args = ("score", "--dataset", data, "-m", model_dirs["llama"], "-f", "json", "--bootstrap", 200, "--seed", 3)
    first, again = json.loads(run(*args).stdout)["total"], json.loads(run(*args).stdout)["total"]
    assert first["bootstrap_ci95"] == again["bootstrap_ci95"]
    low, high = first["bootstrap_ci95"]
    assert low < first["perplexity"] < high
    assert first["bootstrap"] == {"resamples": 200, "seed": 3, "unit": "document"}


def test_resume_after_a_stopped_run_gives_the_same_totals(model_dirs, tmp_path: Path, monkeypatch) -> None:
    from gptloss_cli.tasks import score as api

    records = [{"text": (p + c) * (1 + i % 3)} for i, (p, c) in enumerate(PAIRS * 3)]
    data = write_jsonl(tmp_path / "d.jsonl", records)
    common = ("score", "--dataset", data, "-m", model_dirs["llama"], "--batch-size", 2, "--max-length", 16)
    whole = tmp_path / "whole.jsonl"
    assert run(*common, "-o", whole).exit_code == 0
    lines = [json.loads(x) for x in whole.read_text().splitlines()]
    assert lines[0]["schema"] == "gptloss.score-run/v1" and "total" in lines[-1]
    assert sorted(x["index"] for x in lines[1:-1]) == list(range(len(records)))

    original = api.ScoreRun.scores

    part = tmp_path / "part.jsonl"
    monkeypatch.setattr(api.ScoreRun, "scores", stopped_after(original, 5))
    stopped = run(*common, "-o", part)
    assert stopped.exit_code == 130 and "interrupted" in stopped.stderr
    kept = [json.loads(x) for x in part.read_text().splitlines()]  # every line whole
    assert len(kept) == 1 + 5 and not any("total" in x for x in kept)
    with part.open("a") as handle:  # as if the process died in the middle of a line
        handle.write('{"index": 3, "source": "d.js')
    monkeypatch.setattr(api.ScoreRun, "scores", original)
    resumed = run(*common, "-o", part, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    done = [json.loads(x) for x in part.read_text().splitlines()]
    assert done[-1]["total"] == lines[-1]["total"]  # the same numbers, bit for bit
    by_index = {x["index"]: x for x in done[1:-1]}
    assert len(by_index) == len(done) - 2 == len(records)
    assert by_index == {x["index"]: x for x in lines[1:-1]}
    again = run(*common, "-o", part, "--resume")  # a finished run: nothing left to score, the same total
    assert again.exit_code == 0 and json.loads(part.read_text().splitlines()[-1]) == lines[-1]
    other = run(*common[:-2], "--max-length", 32, "-o", part, "--resume")
    assert other.exit_code == 1 and "another max_length" in other.stderr


def test_compare_on_a_dataset_with_a_bootstrap_of_the_ratio(model_dirs, tmp_path: Path) -> None:
    from gptloss_cli.core.totals import bootstrap_exp_ci95

    records = [{"prompt": p, "completion": c} for p, c in PAIRS * 2]
    data = write_jsonl(tmp_path / "pc.jsonl", records)
    args = (
        "compare", model_dirs["llama"], model_dirs["gpt2"], "--dataset", data, "--prompt-column", "prompt",
        "--completion-column", "completion", "--bootstrap", 300, "--seed", 5, "-f", "json",
    )  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == json.loads(run(*args).stdout)  # seeded: the same interval again
    total = out["paired"]
    low, high = total["ppl_ratio_bootstrap_ci95"]
    assert low < total["ppl_ratio"] < high
    docs = [d["paired"] for d in out["documents"]]
    counts = np.array([d["n"] for d in docs], dtype=float)
    sums = np.array([d["mean_delta_nll"] * d["n"] for d in docs])
    assert (low, high) == pytest.approx(bootstrap_exp_ci95(counts, sums, 300, 5), rel=1e-9)
    scored = run(
        "score", "--dataset", data, "--prompt-column", "prompt", "--completion-column", "completion",
        "-m", model_dirs["llama"], "-f", "json",
    )  # fmt: skip
    assert sum(d["n"] for d in docs) == total["n"] == json.loads(scored.stdout)["total"]["tokens_scored"]
    table = run(*args[:-2])
    assert table.exit_code == 0 and "B/A 95% bootstrap interval" in table.stdout


def test_tokens_header_names_the_dataset(model_dirs, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": p + c} for p, c in PAIRS])
    result = run("tokens", "--dataset", data, "-m", model_dirs["llama"], "-f", "jsonl", "--limit", 2)
    header = json.loads(result.stdout.splitlines()[0])
    assert header["input"]["dataset"] == str(data) and header["input"]["limit"] == 2


def test_a_reply_found_in_its_header_is_not_confused_with_it(chat_model: Path, tmp_path: Path) -> None:
    """The reply "a" also occurs in "<|im_start|>assistant": only the reply and its end marker are scored."""
    chats = [[{"role": "user", "content": "Pick one"}, {"role": "assistant", "content": x}] for x in "ab"]
    data = write_jsonl(tmp_path / "pick.jsonl", [{"messages": m} for m in chats])
    result = run("tokens", "--dataset", data, "--messages-column", "messages", "-m", chat_model, "-f", "json")
    assert result.exit_code == 0, result.stderr
    texts = ["".join(t["token"] for t in d["tokens"]) for d in json.loads(result.stdout)["documents"]]
    assert texts == ["a<|im_end|>", "b<|im_end|>"]


def test_a_chat_the_template_refuses_is_a_bad_record(chat_model: Path, tmp_path: Path) -> None:
    strict = CHATML.replace(
        "{% for message in messages %}",
        "{% for message in messages %}{% if loop.index0 > 0 and message['role'] == messages[loop.index0 - 1]['role'] %}"
        "{{ raise_exception('roles must alternate') }}{% endif %}",
    )
    template = tmp_path / "strict.jinja"
    template.write_text(strict, encoding="utf-8")
    bad = [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]
    data = write_jsonl(tmp_path / "c.jsonl", [{"messages": CHATS[1]}, {"messages": bad}])
    args = ("score", "--dataset", data, "--messages-column", "messages", "--chat-template", template, "-m", chat_model)
    result = run(*args)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "c.jsonl:2:" in result.stderr and "roles must alternate" in result.stderr
    result = run(*args, "--skip-bad-records", "-f", "json")
    assert result.exit_code == 0 and "skipped 1 chat" in result.stderr
    assert [d["source"] for d in json.loads(result.stdout)["documents"]] == ["c.jsonl:1"]


def test_more_bad_input_is_one_line(model_dirs, tmp_path: Path) -> None:
    model = ("-m", model_dirs["llama"])
    (tmp_path / "s.jsonl").write_text('{"text": "ok"}\n{"text": "caf\\udce9"}\n', encoding="utf-8")
    result = run("score", "--dataset", tmp_path / "s.jsonl", *model)
    assert result.exit_code == 1 and "s.jsonl:2: column 'text' holds a lone surrogate" in result.stderr
    assert (
        "skipped 1 bad record" in run("score", "--dataset", tmp_path / "s.jsonl", *model, "--skip-bad-records").stderr
    )
    write_jsonl(tmp_path / "m.jsonl", [{"body": "no text"}, {"text": "The cat sat on the mat."}])
    result = run("score", "--dataset", tmp_path / "m.jsonl", *model, "--skip-bad-records", "-f", "json")
    assert result.exit_code == 0 and [d["source"] for d in json.loads(result.stdout)["documents"]] == ["m.jsonl:2"]
    write_jsonl(tmp_path / "sp.jsonl", [{"text": "abc", "spans": [[0, 99]]}, {"text": "The cat.", "spans": [[4, 7]]}])
    result = run("score", "--dataset", tmp_path / "sp.jsonl", "--span-column", "spans", *model, "--skip-bad-records")
    assert result.exit_code == 0 and "span [0, 99] is not [start, end]" in result.stderr  # not eaten as markup
    write_jsonl(tmp_path / "e.jsonl", [{"prompt": "The cat sat.", "completion": ""}])
    result = run("score", "--dataset", tmp_path / "e.jsonl", "--prompt-column", "prompt", "--completion-column",
                 "completion", *model)  # fmt: skip
    assert result.exit_code == 1 and "no record has a token in the completion" in result.stderr
    (tmp_path / "t.tsv").write_text("text\tn\nhello, world and more\t1\n", encoding="utf-8")
    result = run("score", "--dataset", tmp_path / "t.tsv", *model, "-f", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["total"]["bytes"] == len("hello, world and more")
    (tmp_path / "l.csv").write_bytes("text\ncafé au lait\n".encode("latin-1"))
    result = run("score", "--dataset", tmp_path / "l.csv", *model)
    assert result.exit_code == 1 and "can't decode byte 0xe9" in result.stderr and result.stderr.count("\n") == 1
    result = run("score", "--dataset", tmp_path / "l.csv", *model, "--encoding", "latin-1", "-f", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["total"]["bytes"] == len("café au lait".encode())


def test_resume_refuses_other_documents_and_broken_lines(model_dirs, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": p + c} for p, c in PAIRS])
    out = tmp_path / "run.jsonl"
    common = ("score", "--dataset", data, "-m", model_dirs["llama"], "-o", out)
    assert run(*common).exit_code == 0
    write_jsonl(data, [{"text": p + c + "!"} for p, c in PAIRS])  # the same records, edited
    result = run(*common, "--resume")
    assert result.exit_code == 1 and "written from other documents" in result.stderr
    write_jsonl(data, [{"text": p + c} for p, c in PAIRS])
    lines = out.read_text().splitlines()
    out.write_text("\n".join([lines[0], '{"index": 0, "source": "d.jsonl:1"}', *lines[2:]]) + "\n")
    result = run(*common, "--resume")
    assert result.exit_code == 1 and "line 2: not a run record" in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_hub_is_not_asked_and_the_environment_is_left_alone(monkeypatch) -> None:
    """Library code sets no environment variable: without the hub, the offline switch goes to the libraries' own
    constants (which they read when they would go online), and the dataset is looked for in the cache only."""
    import datasets
    import huggingface_hub.constants

    from gptloss_cli.errors import GptlossError
    from gptloss_cli.inputs import dataset

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # put back afterwards
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(dataset, "hub_reachable", lambda: False)
    with pytest.raises(GptlossError, match="hub cannot be reached"):
        dataset.read_dataset(dataset.DatasetOptions("someone/no-such-dataset"))
    assert "HF_HUB_OFFLINE" not in os.environ and "HF_DATASETS_OFFLINE" not in os.environ
    assert huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
