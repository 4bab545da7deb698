"""score's analyses against direct computations: loss by context position from the tokens' own records,
Min-K% and Min-K%++ from the model's full log-softmax, zlib by hand, AUROC by counting pairs and TPR at FPR
by scanning every threshold."""

from __future__ import annotations

import itertools
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BATCH_RTOL, assert_totals_close, one_line_error, run, usage_error

from gptloss_cli.core.analyses import smallest_mean
from gptloss_cli.core.detection import auroc, tpr_at_fpr
from gptloss_cli.core.lmhead import Head
from gptloss_cli.core.moments import head_moments, softmax_moments
from gptloss_cli.core.plan import WindowSettings
from gptloss_cli.inputs.document import Document
from gptloss_cli.tasks.analyses import Analyses
from gptloss_cli.tasks.score import ScoreRun

TEXTS = [
    "The cat sat on the mat. The dog sat on the log. " * 5,
    "Perplexity is the exponential of the mean negative log-likelihood, and so on.",
    "Zählt die Wörter, 42 Äpfel und 7 Birnen; naïve café. " * 2,
]


def test_by_position_buckets_group_the_token_records(model_dirs, tmp_path: Path) -> None:
    paths = []
    for i, text in enumerate(TEXTS):
        paths.append(tmp_path / f"t{i}.txt")
        paths[-1].write_text(text, encoding="utf-8")
    common = ("-m", model_dirs["gemma3"], "--max-length", 24, "--stride", 8)
    scored = run("score", *paths, *common, "--by-position", 5, "-f", "json")
    assert scored.exit_code == 0, scored.stderr
    data = json.loads(scored.stdout)
    records = json.loads(run("tokens", *paths, *common, "-f", "json").stdout)
    for doc, tokens in zip(data["documents"] + [data["total"]], records["documents"] + [None], strict=True):
        group = [r for d in records["documents"] for r in d["tokens"]] if tokens is None else tokens["tokens"]
        rows = doc["by_position"]["buckets"]
        assert sum(r["tokens"] for r in rows) == doc["tokens_scored"]
        assert math.isclose(math.fsum(r["nll_sum"] for r in rows), doc["nll_sum"], rel_tol=1e-12)
        for row in rows:
            inside = [r["nll"] for r in group if row["context_from"] <= r["context"] < row["context_to"]]
            assert row["tokens"] == len(inside)
            if inside:
                assert math.isclose(row["nll_sum"], math.fsum(inside), rel_tol=BATCH_RTOL)
                assert math.isclose(row["mean_nll"], math.fsum(inside) / len(inside), rel_tol=BATCH_RTOL)
    assert data["settings"]["analyses"] == {"by_position": 5}


def test_moments_equal_the_full_distribution() -> None:
    torch.manual_seed(0)
    logits = torch.randn(7, 5000) * 4  # (M, V), several vocabulary blocks
    targets = torch.randint(0, 5000, (7,))
    logp = torch.log_softmax(logits.double(), dim=-1)
    p = logp.exp()
    mean = (p * logp).sum(-1)
    sd = ((p * logp * logp).sum(-1) - mean**2).sqrt()
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    for got in (head_moments(Head(logits, None), targets), softmax_moments(Head(logits, None), targets)):
        for value, expected in zip(got, (nll, mean, sd), strict=True):
            assert torch.allclose(value.double(), expected, rtol=1e-5, atol=1e-5)


def test_min_k_rounding_and_ties() -> None:
    values = np.array([3.0, -1.0, 2.0, -1.0, 0.5, 7.0, -2.0, 0.0, 1.0, 4.0])
    assert smallest_mean(values, 0.2) == (-2.0 + -1.0) / 2  # ⌈0.2·10⌉ = 2
    assert smallest_mean(values, 0.7) == math.fsum(sorted(values)[:7]) / 7  # 0.7·10 is 7.000000000000001 in floats
    assert smallest_mean(values, 0.25) == (-2.0 - 1.0 - 1.0) / 3  # ⌈2.5⌉ = 3, the tie kept once each
    assert smallest_mean(values[:1], 0.01) == 3.0 and smallest_mean(np.zeros(0), 0.2) is None


def test_membership_scores_against_the_model_logits(loaded) -> None:
    lm = loaded["llama"]
    settings = WindowSettings(max_length=128)  # one window: the full logits give every position at once
    run_ = ScoreRun(lm, [Document(TEXTS[0], "t")], settings, analyses=Analyses(min_k=0.3))
    assert len(run_.tokenized[0]) < 128
    [doc] = run_.run().documents
    tokens = run_.tokenized[0]
    ids = torch.tensor([[lm.tokenizer.bos_token_id, *tokens.ids.tolist()]])
    with torch.inference_mode():
        logp = torch.log_softmax(lm.model(input_ids=ids).logits[0, :-1].double(), dim=-1)  # (n, V)
    ell = logp.gather(1, torch.tensor(tokens.ids)[:, None]).squeeze(1).numpy()  # (n,)
    p = logp.exp()
    mu = (p * logp).sum(-1).numpy()
    sigma = np.sqrt((p * logp * logp).sum(-1).numpy() - mu**2)
    n, k = len(ell), math.ceil(0.3 * len(ell))
    member = doc.analyses.membership
    assert member is not None and member.k == 0.3
    assert member.min_k_prob == pytest.approx(np.sort(ell)[:k].mean(), rel=1e-6)
    assert member.min_k_plus_plus == pytest.approx(np.sort((ell - mu) / sigma)[:k].mean(), rel=1e-5, abs=1e-6)
    compressed = len(zlib.compress(TEXTS[0].encode("utf-8")))
    assert member.zlib_ratio == pytest.approx(-ell.sum() / n / compressed, rel=1e-6)
    assert member.zlib_bytes == compressed


def pairwise_auroc(scores: list[float], labels: list[int]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def brute_tpr(scores: list[float], labels: list[int], fpr: float) -> float:
    best = 0.0
    for t in [*scores, math.inf]:
        flagged = [y for s, y in zip(scores, labels, strict=True) if s >= t]
        if sum(1 for y in flagged if not y) / labels.count(0) <= fpr:
            best = max(best, sum(flagged) / labels.count(1))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_auroc_and_tpr_against_counting(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=23).astype(float).tolist()  # many ties
    labels = rng.integers(0, 2, size=23).tolist()
    labels[0], labels[1] = 0, 1
    assert auroc(np.array(scores), np.array(labels)) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)
    for fpr in (0.0, 0.01, 0.05, 0.2, 0.5):
        tpr, threshold = tpr_at_fpr(np.array(scores), np.array(labels), fpr)
        assert tpr == pytest.approx(brute_tpr(scores, labels, fpr), abs=1e-12)
        flagged = [y for s, y in zip(scores, labels, strict=True) if s >= threshold]
        assert sum(flagged) / labels.count(1) == pytest.approx(tpr)
    assert auroc(np.array([1.0, 2.0]), np.array([1, 1])) is None and tpr_at_fpr(np.ones(2), np.zeros(2), 0.1) is None


def test_label_column_gives_detection_metrics(model_dirs, tmp_path: Path) -> None:
    words = TEXTS[0].split()
    rng = np.random.default_rng(0)
    records = []
    for i in range(6):
        records.append({"text": " ".join(words[i : i + 20]), "member": "true"})
        records.append({"text": " ".join(rng.permutation(words[i : i + 20]).tolist()), "member": 0})
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    common = ("score", "--dataset", data, "--label-column", "member", "-m", model_dirs["llama"])
    result = run(*common, "--membership", "-f", "json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    found = {d["score"]: d for d in out["total"]["detection"]}
    assert set(found) == {"mean_nll", "perplexity", "min_k_prob", "min_k_plus_plus", "zlib_ratio"}
    means = [d["mean_nll"] for d in out["documents"]]
    labels = [d["label"] for d in out["documents"]]
    assert labels == [1, 0] * 6
    expected = pairwise_auroc([-m for m in means], labels)  # label 1 when the mean NLL is lower
    assert found["mean_nll"]["auroc"] == pytest.approx(expected, abs=1e-12)
    assert found["mean_nll"]["documents"] == {"label_1": 6, "label_0": 6}
    table = run(*common, "--membership")
    assert table.exit_code == 0 and "AUROC" in table.stdout and "Min-K%++" in table.stdout
    data.write_text("".join(json.dumps({**r, "member": 1}) + "\n" for r in records), encoding="utf-8")
    one_class = run(*common, "-f", "json")
    assert one_class.exit_code == 0 and "no document is labelled 0" in one_class.stderr
    assert all(d["auroc"] is None for d in json.loads(one_class.stdout)["total"]["detection"])
    data.write_text(json.dumps({"text": "a b", "member": "maybe"}) + "\n", encoding="utf-8")
    one_line_error(run(*common), "d.jsonl:1", "'member'", "not a label")


def test_analyses_survive_run_files_resume_and_merge(model_dirs, tmp_path: Path) -> None:
    paths = []
    for i, text in enumerate(TEXTS):
        paths.append(tmp_path / f"t{i}.txt")
        paths[-1].write_text(text, encoding="utf-8")
    common = ("score", *paths, "-m", model_dirs["llama"], "--max-length", 24, "--by-position", 6, "--membership")
    whole = json.loads(run(*common, "-f", "json").stdout)
    shards = [tmp_path / f"s{i}.jsonl" for i in range(2)]
    for i, shard in enumerate(shards):
        assert run(*common, "--shard", f"{i}/2", "-o", shard).exit_code == 0
    merged = json.loads(run("merge", *shards, "-f", "json").stdout)
    assert merged["total"]["by_position"] == whole["total"]["by_position"]
    for got, expected in zip(merged["documents"], whole["documents"], strict=True):
        assert got["membership"] == expected["membership"]
        assert_totals_close({k: got[k] for k in ("nll_sum",)}, {k: expected[k] for k in ("nll_sum",)})
    refused = run("score", *paths, "-m", model_dirs["llama"], "--max-length", 24, "-o", shards[0], "--resume")
    one_line_error(refused, "analyses")


def test_compare_reports_detection_of_each_model_and_the_difference(model_dirs, tmp_path: Path) -> None:
    words = TEXTS[0].split()
    rng = np.random.default_rng(1)
    records = []
    for i in range(5):
        records.append({"text": " ".join(words[i : i + 16]), "y": 1})
        records.append({"text": " ".join(rng.permutation(words[i : i + 16]).tolist()), "y": 0})
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    a, b = model_dirs["llama"], model_dirs["gemma3"]
    result = run("compare", a, b, "--dataset", data, "--label-column", "y", "-f", "json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    found = {d["score"]: d for d in out["detection"]}
    assert set(found) == {"mean_nll_a", "mean_nll_b", "delta_mean_nll"}
    labels = [d["label"] for d in out["documents"]]
    deltas = [d["delta_mean_nll"] for d in out["documents"]]
    assert found["delta_mean_nll"]["auroc"] == pytest.approx(pairwise_auroc([-x for x in deltas], labels), abs=1e-12)
    means_a = [d["a"]["mean_nll"] for d in out["documents"]]
    assert found["mean_nll_a"]["auroc"] == pytest.approx(pairwise_auroc([-x for x in means_a], labels), abs=1e-12)
    assert "AUROC" in run("compare", a, b, "--dataset", data, "--label-column", "y").stdout


def test_context_lengths_score_the_same_tokens_with_each_window(model_dirs, tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text(TEXTS[0] * 3, encoding="utf-8")
    model = model_dirs["gemma3"]
    result = run("score", path, "-m", model, "--context-lengths", "16,8,32", "-f", "json")
    assert result.exit_code == 0, result.stderr
    curve = json.loads(result.stdout)
    points = curve["points"]
    assert [p["max_length"] for p in points] == [8, 16, 32] and curve["settings"]["skipped"] == 32
    assert len({p["tokens_scored"] for p in points}) == 1
    for p in points:
        length = p["max_length"]
        assert p["stride"] == length // 2 and length // 2 <= p["context_min"] <= p["context_max"] <= length - 1
        records = json.loads(
            run("tokens", path, "-m", model, "--max-length", length, "--stride", length // 2, "-f", "json").stdout
        )["documents"][0]["tokens"]
        late = [r["nll"] for r in records if r["index"] >= 32]
        assert p["tokens_scored"] == len(late)
        assert math.isclose(p["nll_sum"], math.fsum(late), rel_tol=BATCH_RTOL)
    table = run("score", path, "-m", model, "--context-lengths", "8,16")
    assert table.exit_code == 0 and "as the context grows" in table.stdout
    usage_error(run("score", path, "-m", model, "--context-lengths", "8", "--max-length", 8), "--max-length")
    usage_error(run("score", path, "-m", model, "--context-lengths", "x"), "--context-lengths")
    short = tmp_path / "short.txt"
    short.write_text(TEXTS[1], encoding="utf-8")
    one_line_error(run("score", short, "-m", model, "--context-lengths", "64"), "longer than 64")


def test_tokens_html_plots_ppl_by_context_position(model_dirs, tmp_path: Path) -> None:
    import re

    path = tmp_path / "t.txt"
    path.write_text(TEXTS[0] * 2, encoding="utf-8")
    page = tmp_path / "r.html"
    common = ("tokens", path, "-m", model_dirs["llama"], "--max-length", 48, "--stride", 24)
    assert run(*common, "--html", page).exit_code == 0
    html = page.read_text(encoding="utf-8")
    assert 'aria-label="perplexity by context position, log scale"' in html
    line = re.search(r'<polyline fill="none" stroke="#b71c1c" stroke-width="1.5" points="([^"]+)"', html)
    band = re.search(r'<polygon [^>]*points="([^"]+)"', html)
    assert line and band
    records = json.loads(run(*common, "-f", "json").stdout)["documents"][0]["tokens"]
    width = math.ceil((max(r["context"] for r in records) + 1) / 24)
    buckets = {r["context"] // width for r in records}
    assert len(line.group(1).split()) == len(buckets) and len(band.group(1).split()) == 2 * len(buckets)
