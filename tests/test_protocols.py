"""The presets against the peers' own algorithms, transcribed here from their code and documentation: windows
on hand-worked lengths, and totals on tiny models against the model's `labels=` loss per window."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_model_dir, one_line_error, run, usage_error

from gptloss_cli.core.plan import WindowSettings
from gptloss_cli.core.presets import Layout, preset, preset_names
from gptloss_cli.core.windows import TokenizedDocument, window_inputs
from gptloss_cli.inputs.document import Document
from gptloss_cli.models.loader import load_model
from gptloss_cli.tasks.score import ScoreRun

L = 8
P = 999  # the lm-eval prefix token in the window tests
TEXT = (
    "The cat sat on the mat. The dog sat on the log. Perplexity is the exponential of the mean negative "
    "log-likelihood; 1. screws: 312, 2. bolts: 48."
)


def stream(n: int) -> TokenizedDocument:
    ids = np.arange(10, 10 + n, dtype=np.int64)
    ends = np.arange(1, n + 1, dtype=np.int64)
    return TokenizedDocument(Document("x" * n, "s"), ids, ends - 1, ends)


def document_windows(name: str, doc: int, n: int, length: int, stride: int, bos: int | None, prefix: int | None):
    """The windows of the preset called `name`."""
    return preset(name).windows(doc, n, Layout(length, stride, bos, prefix))


def as_pairs(tokens: TokenizedDocument, protocol: str, bos: int | None = None) -> list[tuple[list, list]]:
    """Our windows as (model input, scored tokens)."""
    windows = document_windows(protocol, 0, len(tokens), L, L, bos, P)
    return [(window_inputs(tokens, w), tokens.ids[w.score_start : w.end].tolist()) for w in windows]


def lm_eval_reference(tokens: list[int], prefix: int, length: int) -> list[tuple[list, list]]:
    """lm-evaluation-harness 0.4: get_rolling_token_windows(context_len=1) then make_disjoint_window; the model
    input is (context + continuation)[:-1]."""
    if not tokens:
        return []
    first = min(length, len(tokens))
    pairs = [([prefix, *tokens[: first - 1]], tokens[:first])]
    done = first
    while done < len(tokens):
        m = min(len(tokens) - done, length)
        end = done + m
        pairs.append((tokens[end - length - 1 : end - 1], tokens[end - m : end]))
        done = end
    out = []
    for a, b in pairs:
        context = a[: len(a) - (len(b) - 1)]
        out.append(((context + b)[:-1], b))
    return out


@pytest.mark.parametrize("n", [0, 1, L - 1, L, L + 1, 2 * L + 3])
def test_lm_eval_windows(n: int) -> None:
    tokens = stream(n)
    assert as_pairs(tokens, "lm-eval") == lm_eval_reference(tokens.ids.tolist(), P, L)


def test_lm_eval_windows_match_lm_eval_itself() -> None:
    utils = pytest.importorskip("lm_eval.utils")
    for n in (0, 1, L - 1, L, L + 1, 2 * L + 3, 50):
        tokens = stream(n)
        rolling = utils.get_rolling_token_windows(tokens.ids.tolist(), P, L, 1)
        theirs = [((a + b)[:-1], b) for a, b in map(utils.make_disjoint_window, rolling)]
        assert as_pairs(tokens, "lm-eval") == theirs


@pytest.mark.parametrize("n", [2 * L, 2 * L + 3, 3 * L - 1, 5 * L])
@pytest.mark.parametrize("bos", [None, 7])
def test_llama_cpp_chunks(n: int, bos: int | None) -> None:
    """llama-perplexity: n // L chunks, the first token replaced by BOS, tokens L/2 + 1 .. L - 1 scored."""
    tokens = stream(n)
    expected = []
    for i in range(n // L):
        chunk = tokens.ids[i * L : (i + 1) * L].tolist()
        if bos is not None:
            chunk[0] = bos
        expected.append((chunk, chunk[L // 2 + 1 :]))
    assert as_pairs(tokens, "llama.cpp", bos) == expected


@pytest.mark.parametrize("n", [0, 1, L - 1, L, L + 1, 2 * L + 3])
def test_gptq_chunks(n: int) -> None:
    tokens = stream(n)
    expected = [(c, c[1:]) for c in (tokens.ids[i * L : (i + 1) * L].tolist() for i in range(n // L))]
    assert as_pairs(tokens, "gptq") == expected


@pytest.mark.parametrize("n", [1, L - 1, L, L + 1, 2 * L + 3])
@pytest.mark.parametrize("stride", [L, 3])
def test_hf_stride_windows(n: int, stride: int) -> None:
    """The recipe's loop: windows [b, b + L), labels for the tokens after the previous window's end."""
    tokens = stream(n)
    expected, previous = [], 0
    for begin in range(0, n, stride):
        end = min(begin + L, n)
        ids = tokens.ids[begin:end].tolist()
        labelled = ids[-(end - previous) :][1 if previous == begin else 0 :] if end - previous else []
        if labelled:
            expected.append((ids, labelled))
        previous = end
        if end == n:
            break
    windows = document_windows("hf-stride", 0, n, L, stride, None, None)
    assert [(window_inputs(tokens, w), tokens.ids[w.score_start : w.end].tolist()) for w in windows] == expected


# On tiny models: each preset's totals against the model's own loss, window by window.


@pytest.fixture(scope="module")
def postbos(tmp_path_factory: pytest.TempPathFactory):
    """A tiny Llama whose tokenizer's defaults put BOS first (as Gemma's do)."""
    return load_model(str(build_model_dir(tmp_path_factory.mktemp("postbos"), "llama", post_bos=True)))


def labels_sum(model, full: list[int], scored: int) -> tuple[float, int]:
    """Σ NLL of the last `scored` tokens of `full`, each predicted from all before it (transformers' loss)."""
    ids = torch.tensor([full])
    labels = torch.full_like(ids, -100)
    labels[0, len(full) - scored :] = ids[0, len(full) - scored :]
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=labels).loss
    return float(loss) * scored, scored


def score(lm, protocol: str, **settings) -> dict:
    result = ScoreRun(lm, [Document(TEXT, "t")], WindowSettings(protocol=protocol, **settings)).run()
    return result.to_dict()


def test_lm_eval_totals(postbos) -> None:
    tokens = postbos.tokenizer.encode(TEXT, special=True)[0].tolist()  # the tokenizer's defaults
    assert tokens[0] == postbos.tokenizer.bos_token_id
    parts = [labels_sum(postbos.model, [*inp, tgt[-1]], len(tgt)) for inp, tgt in lm_eval_reference(tokens, 1, 16)]
    got = score(postbos, "lm-eval", max_length=16)["total"]
    assert got["tokens_scored"] == sum(c for _, c in parts) == len(tokens)
    assert math.isclose(-got["lm_eval"]["log_likelihood"], sum(s for s, _ in parts), rel_tol=1e-5)
    words, n_bytes = len(__import__("re").split(r"\s+", TEXT)), len(TEXT.encode())
    ll = got["lm_eval"]["log_likelihood"]
    assert got["lm_eval"]["words"] == words and got["lm_eval"]["bytes"] == n_bytes
    assert math.isclose(got["lm_eval"]["word_perplexity"], math.exp(-ll / words), rel_tol=1e-12)
    assert math.isclose(got["lm_eval"]["bits_per_byte"], -ll / n_bytes / math.log(2), rel_tol=1e-12)


def test_llama_cpp_totals(postbos) -> None:
    bos = postbos.tokenizer.bos_token_id
    tokens = [bos, *postbos.tokenizer.encode(TEXT)[0].tolist()]
    n = 16
    nll = []
    for i in range(len(tokens) // n):
        chunk = tokens[i * n : (i + 1) * n]
        chunk[0] = bos
        with torch.inference_mode():
            logp = torch.log_softmax(postbos.model(input_ids=torch.tensor([chunk])).logits[0].double(), -1)
        nll += [-float(logp[j, chunk[j + 1]]) for j in range(n // 2, n - 1)]
    got = score(postbos, "llama.cpp", max_length=n)["total"]
    assert got["tokens_scored"] == len(nll) == (len(tokens) // n) * (n // 2 - 1)
    mean = sum(nll) / len(nll)
    assert math.isclose(got["llama_cpp"]["perplexity"], math.exp(mean), rel_tol=1e-5)
    spread = math.sqrt((sum(x * x for x in nll) / len(nll) - mean * mean) / (len(nll) - 1))
    assert math.isclose(got["llama_cpp"]["plus_minus"], math.exp(mean) * spread, rel_tol=1e-3)


def test_hf_stride_reproduces_the_recipe_and_corrects_its_count(postbos) -> None:
    """The documentation's loop, as written there: loss * (num_valid_tokens - batch_size)."""
    encodings = torch.tensor([postbos.tokenizer.encode(TEXT, special=True)[0].tolist()])
    max_length, stride, seq_len = 16, 6, encodings.size(1)
    nll_sum, n_tokens, true_sum, true_count, prev_end_loc = 0.0, 0, 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = encodings[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.inference_mode():
            loss = float(postbos.model(input_ids, labels=target_ids).loss)
        num_loss_tokens = int((target_ids != -100).sum()) - target_ids.size(0)
        nll_sum, n_tokens = nll_sum + loss * num_loss_tokens, n_tokens + num_loss_tokens
        really = int((target_ids[:, 1:] != -100).sum())  # the labels the loss was averaged over
        true_sum, true_count = true_sum + loss * really, true_count + really
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    got = score(postbos, "hf-stride", max_length=max_length, stride=stride)["total"]
    assert got["hf_stride"]["tokens"] == n_tokens < true_count == got["tokens_scored"]
    assert math.isclose(got["hf_stride"]["perplexity"], math.exp(nll_sum / n_tokens), rel_tol=1e-5)
    assert math.isclose(got["nll_sum"], true_sum, rel_tol=1e-5)


def test_gptq_totals(postbos) -> None:
    stream_ids = postbos.tokenizer.encode(TEXT, special=True)[0].tolist()
    n, losses = 16, []
    for i in range(len(stream_ids) // n):
        ids = torch.tensor([stream_ids[i * n : (i + 1) * n]])
        with torch.inference_mode():
            losses.append(float(postbos.model(ids, labels=ids).loss))
    got = score(postbos, "gptq", max_length=n)["total"]
    assert got["tokens_scored"] == len(losses) * (n - 1) and got["gptq"]["chunks"] == len(losses)
    assert math.isclose(got["gptq"]["perplexity"], math.exp(sum(losses) / len(losses)), rel_tol=1e-5)


def test_protocol_card_and_refusals(model_dirs, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    data = json.loads(
        run("score", path, "-m", model_dirs["llama"], "--protocol", "gptq", "--max-length", 16, "-f", "json").stdout
    )
    card = data["settings"]["protocol"]
    assert card["name"] == "gptq" and card["bos"] == "none added" and card["window"] == 16
    assert card["tokens_scored"] + card["tokens_dropped"] == card["tokens"]
    assert card["tokens_scored"] == data["total"]["tokens_scored"] == card["windows"] * 15
    usage_error(run("score", path, "-m", model_dirs["llama"], "--protocol", "lm-eval", "--bos", "never"), "--bos")
    usage_error(run("score", path, "-m", model_dirs["llama"], "--protocol", "gptq", "--stride", 4), "--stride")
    one_line_error(run("score", path, "-m", model_dirs["llama"], "--protocol", "llama.cpp"), "2 x n_ctx")


def test_protocol_all_lists_every_preset(model_dirs, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(TEXT * 3, encoding="utf-8")
    result = run("score", path, "-m", model_dirs["llama"], "--protocol", "all", "--max-length", 16, "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [p["protocol"] for p in data["protocols"]] == preset_names()
    single = json.loads(
        run("score", path, "-m", model_dirs["llama"], "--protocol", "gptq", "--max-length", 16, "-f", "json").stdout
    )
    gptq = next(p for p in data["protocols"] if p["protocol"] == "gptq")
    assert gptq["total"] == single["total"]
    table = run("score", path, "-m", model_dirs["llama"], "--protocol", "all", "--max-length", 16)
    assert all(name in table.stdout for name in preset_names())


def test_run_files_keep_the_recipe_sums(model_dirs, tmp_path: Path) -> None:
    """A run file's document lines carry hf-stride's own sums, so its total is the same as -f json's."""
    path = tmp_path / "t.txt"
    path.write_text(TEXT * 2, encoding="utf-8")
    common = ("score", path, "-m", model_dirs["llama"], "--protocol", "hf-stride", "--max-length", 16, "--stride", 6)
    whole = json.loads(run(*common, "-f", "json").stdout)["total"]
    out = tmp_path / "run.jsonl"
    assert run(*common, "-o", out).exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["settings"]["protocol"]["name"] == "hf-stride" and "recipe_sums" in lines[1]
    assert lines[-1]["total"]["hf_stride"] == whole["hf_stride"]
    assert run(*common, "-o", out, "--resume").exit_code == 0  # read back: the same total
    assert json.loads(out.read_text().splitlines()[-1])["total"] == lines[-1]["total"]
    refused = run("score", path, "-m", model_dirs["llama"], "--max-length", 16, "--stride", 6, "-o", out, "--resume")
    one_line_error(refused, "another protocol")


def test_tokens_and_compare_take_a_protocol(model_dirs, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(TEXT, encoding="utf-8")
    model = model_dirs["llama"]
    scored = json.loads(run("score", path, "-m", model, "--protocol", "lm-eval", "-f", "json").stdout)["total"]
    tokens = json.loads(run("tokens", path, "-m", model, "--protocol", "lm-eval", "-f", "json").stdout)
    assert tokens["settings"]["protocol"]["name"] == "lm-eval"
    records = tokens["documents"][0]["tokens"]
    assert len(records) == scored["tokens_scored"]
    assert math.isclose(sum(r["nll"] for r in records), scored["nll_sum"], rel_tol=1e-9)
    compared = json.loads(
        run("compare", model, model, path, "--protocol", "gptq", "--max-length", 16, "-f", "json").stdout
    )
    assert (
        compared["settings"]["protocol"]["name"] == "gptq"
        and compared["paired"]["n"] == compared["a"]["total"]["tokens_scored"]
    )
    refused = run("tokens", path, "-m", model, "--protocol", "all")  # all is score's: a usage error elsewhere
    assert refused.exit_code == 2 and "Traceback" not in refused.stderr


def test_presets_report_the_bos_they_add(postbos) -> None:
    """hf-stride and gptq add no BOS (the tokenizer's own is a token of the document); lm-eval adds its prefix."""
    bos = postbos.tokenizer.bos_token_id
    for protocol in ("hf-stride", "gptq", "lm-eval"):
        run_ = ScoreRun(postbos, [Document(TEXT * 3, "t")], WindowSettings(protocol=protocol, max_length=16))
        assert run_.plan.bos_token_id is None
        assert run_.tokenized[0].ids[0] == bos  # the tokenizer's defaults put it first
    lm_eval = ScoreRun(postbos, [Document(TEXT, "t")], WindowSettings(protocol="lm-eval", max_length=16))
    assert lm_eval.plan.prefix_token_id == bos and f"(id {bos})" in lm_eval.card.line()
    gptq = ScoreRun(postbos, [Document(TEXT * 3, "t")], WindowSettings(protocol="gptq", max_length=16))
    assert "none added;" in gptq.card.line()


def test_a_leading_bos_belongs_to_no_word(postbos) -> None:
    from gptloss_cli.core.windows import tokenize
    from gptloss_cli.core.words import word_owner, word_sums

    tokens = tokenize(postbos.tokenizer, Document("The cat sat.", "t"), special=True)
    words, owner = word_owner(tokens)
    assert tokens.ids[0] == postbos.tokenizer.bos_token_id and owner[0] == -1 and (owner[1:] >= 0).all()
    nll = np.arange(len(tokens), dtype=np.float64) + 1.0
    _, _, _, total = word_sums(tokens, np.arange(len(tokens)), nll)
    assert math.isclose(total.sum(), nll[1:].sum())  # every token's NLL but the BOS's


def test_presets_refuse_loss_masks_and_protocol_all_refuses_nothing_scored(model_dirs, tmp_path: Path) -> None:
    data = tmp_path / "pc.jsonl"
    data.write_text(json.dumps({"prompt": "Q: two and two? A:", "completion": " four."}) + "\n", encoding="utf-8")
    masked = ("--dataset", data, "--prompt-column", "prompt", "--completion-column", "completion")
    model = model_dirs["llama"]
    one_line_error(run("score", *masked, "-m", model, "--protocol", "lm-eval"), "takes no loss mask")
    one_line_error(run("compare", model, model, *masked, "--protocol", "gptq"), "takes no loss mask")
    assert run("score", *masked, "-m", model).exit_code == 0  # gptloss's own protocol masks
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    one_line_error(run("score", empty, "-m", model, "--protocol", "all"), "nothing was scored under any protocol")
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    usage_error(run("score", text, "-m", model, "--protocol", "all", "--bootstrap", 10), "--bootstrap")


def test_compare_under_a_preset_computes_nll_as_score_does(model_dirs, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(TEXT * 2, encoding="utf-8")
    model = model_dirs["llama"]
    common = ("--protocol", "lm-eval", "--max-length", 16, "-f", "json")
    scored = json.loads(run("score", path, "-m", model, *common).stdout)["total"]
    compared = json.loads(run("compare", model, model, path, *common).stdout)
    assert compared["a"]["total"]["tokens_scored"] == scored["tokens_scored"]
    assert math.isclose(compared["a"]["total"]["nll_sum"], scored["nll_sum"], rel_tol=1e-12)
