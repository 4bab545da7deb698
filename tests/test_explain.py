"""`gptloss explain`: every value against a hand computation with math.log, errors as one line, and --text
against `gptloss tokens` on a tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run as gptloss

LN = math.log


def run(*args: object):
    return gptloss("explain", *args)


def explained(*args: object) -> dict:
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""

    def no_constant(name: str) -> None:
        raise AssertionError(f"non-strict JSON: {name}")

    return json.loads(result.stdout, parse_constant=no_constant)


def close(actual: float, expected: float, rel: float = 1e-12) -> bool:
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=1e-15)


def check_summary(data: dict, p: list[float], t: list[float]) -> None:
    """cross_entropy, perplexity, mse, kl_divergence and target_entropy against their definitions."""
    ce = -sum(ti * LN(pi) for pi, ti in zip(p, t, strict=True) if ti > 0)
    h = -sum(ti * LN(ti) for ti in t if ti > 0)
    kl = sum(ti * LN(ti / pi) for pi, ti in zip(p, t, strict=True) if ti > 0)
    mse = sum((pi - ti) ** 2 for pi, ti in zip(p, t, strict=True)) / len(p)
    assert close(data["cross_entropy"], ce)
    assert close(data["perplexity"], math.exp(ce))
    assert close(data["target_entropy"], h)
    assert close(data["kl_divergence"], kl)
    assert close(data["mse"], mse)
    assert close(data["cross_entropy"], data["target_entropy"] + data["kl_divergence"])


def test_one_hot_probs_by_vector_and_by_index() -> None:
    by_vector = explained("--probs", "0.1,0.3,0.6", "--target", "0,0,1")
    assert by_vector["schema"] == "gptloss.explain/v1" and by_vector["input"] == "probs"
    assert by_vector["target"] == [0, 0, 1] and by_vector["target_normalised"] is False
    assert "target_class" not in by_vector and "logits" not in by_vector
    assert close(by_vector["cross_entropy"], -LN(0.6))
    assert close(by_vector["perplexity"], 1 / 0.6)
    assert close(by_vector["mse"], (0.1**2 + 0.3**2 + 0.4**2) / 3)
    assert close(by_vector["kl_divergence"], -LN(0.6)) and by_vector["target_entropy"] == 0
    check_summary(by_vector, [0.1, 0.3, 0.6], [0, 0, 1])
    rows = by_vector["rows"]
    assert [r["class"] for r in rows] == [0, 1, 2]
    for r, p in zip(rows, [0.1, 0.3, 0.6], strict=True):
        assert close(r["neg_log_p"], -LN(p))
    assert [r["ce_term"] for r in rows[:2]] == [0, 0] and close(rows[2]["ce_term"], -LN(0.6))
    assert close(rows[2]["squared_error"], 0.4**2) and close(rows[2]["kl_term"], LN(1 / 0.6))
    by_index = explained("--probs", "0.1,0.3,0.6", "--target", "2")
    assert by_index["target_class"] == 2 and by_index["target"] == [0, 0, 1]
    for key in ("cross_entropy", "perplexity", "mse", "kl_divergence"):
        assert by_index[key] == by_vector[key]


@pytest.mark.parametrize(
    ("probs", "expected_ce"),
    [
        ([0.4, 0.1, 0.5], -(0.5 * LN(0.4) + 0.5 * LN(0.1))),  # the example
        ([0.1, 0.3, 0.6], -(0.5 * LN(0.1) + 0.5 * LN(0.3))),
    ],
)
def test_soft_target(probs: list[float], expected_ce: float) -> None:
    data = explained("--probs", ",".join(map(str, probs)), "--target", "0.5,0.5,0")
    assert data["target"] == [0.5, 0.5, 0] and data["target_normalised"] is False
    assert close(data["cross_entropy"], expected_ce)
    assert close(data["target_entropy"], LN(2))
    assert close(data["kl_divergence"], 0.5 * LN(0.5 / probs[0]) + 0.5 * LN(0.5 / probs[1]))
    check_summary(data, probs, [0.5, 0.5, 0])
    assert data["rows"][2]["ce_term"] == 0 and data["rows"][2]["kl_term"] == 0  # t = 0 counts nothing


def test_logits_softmax_steps() -> None:
    data = explained("--logits", "1,2,3", "--target", "2")
    z = math.exp(1) + math.exp(2) + math.exp(3)
    p = [math.exp(i) / z for i in (1, 2, 3)]
    assert data["input"] == "logits" and data["logits"] == [1, 2, 3] and data["target_class"] == 2
    assert data["softmax"]["max"] == 3 and data["softmax"]["shifted"] == [-2, -1, 0]
    assert close(data["softmax"]["sum"], math.exp(-2) + math.exp(-1) + 1)
    for actual, expected in zip(data["probs"], p, strict=True):
        assert close(actual, expected)
    assert close(data["cross_entropy"], LN(z) - 3)
    check_summary(data, p, [0, 0, 1])
    for r, e in zip(data["rows"], (1, 2, 3), strict=True):
        assert r["logit"] == e and r["shifted_logit"] == e - 3 and close(r["exp"], math.exp(e - 3))
        assert close(r["neg_log_p"], LN(z) - e)


def test_large_logits_stay_finite_and_match_the_shifted_ones() -> None:
    large = explained("--logits", "1000,1001,1002", "--target", "0")
    small = explained("--logits", "0,1,2", "--target", "0")
    assert large["softmax"]["shifted"] == small["softmax"]["shifted"] == [-2, -1, 0]
    for a, b in zip(large["probs"], small["probs"], strict=True):
        assert close(a, b)
    z = 1 + math.exp(1) + math.exp(2)
    for key in ("cross_entropy", "perplexity", "mse", "kl_divergence"):
        assert math.isfinite(large[key]) and close(large[key], small[key])
    assert close(large["cross_entropy"], LN(z))
    assert all(math.isfinite(v) for r in large["rows"] for v in r.values())
    assert not large["notes"]


def test_multi_hot_target_is_normalised() -> None:
    data = explained("--probs", "0.2,0.3,0.5", "--target", "1,1,0")
    assert data["target_normalised"] is True and data["target"] == [0.5, 0.5, 0]
    assert data["target_given"] == [1, 1, 0]
    assert close(data["cross_entropy"], -(0.5 * LN(0.2) + 0.5 * LN(0.3)))
    check_summary(data, [0.2, 0.3, 0.5], [0.5, 0.5, 0])
    table = run("--probs", "0.2,0.3,0.5", "--target", "1,1,0")
    assert table.exit_code == 0 and table.stderr == ""
    assert "normalised" in table.stdout


def test_zero_probability_on_the_target_is_infinite_yet_strict_json() -> None:
    data = explained("--probs", "0,0.4,0.6", "--target", "0")
    assert data["cross_entropy"] is None and data["perplexity"] is None and data["kl_divergence"] is None
    assert close(data["mse"], (1 + 0.4**2 + 0.6**2) / 3)
    assert data["rows"][0]["neg_log_p"] is None and any("infinite" in n for n in data["notes"])
    # p = 0 where t = 0 counts nothing: cross-entropy stays finite
    data = explained("--probs", "0,0.4,0.6", "--target", "2")
    assert close(data["cross_entropy"], -LN(0.6)) and data["rows"][0]["ce_term"] == 0
    table = run("--probs", "0,0.4,0.6", "--target", "0")
    assert table.exit_code == 0 and "∞" in table.stdout and "infinite" in table.stdout


def test_table_shows_each_step_and_reading() -> None:
    result = run("--logits", "1,2,3", "--target", "2")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    for word in ("softmax", "logit − max", "−log p", "cross-entropy", "perplexity", "MSE", "KL(t‖p)", "H(t)"):
        assert word in out
    ce = math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3
    assert f"{ce:.4f}" in out and f"{math.exp(ce):.4f}" in out
    p = math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3))
    assert f"{100 * p:.3g}%" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--probs", "-0.1,0.5,0.6", "--target", "0"], "cannot be negative"),
        (["--probs", "0.2,0.3", "--target", "0"], "sum to 0.5, not 1"),
        (["--probs", "0.5,0.5", "--target", "0,0,1"], "has 3 weights but the distribution has 2"),
        (["--probs", "0.5,0.5", "--target", "2"], "no such class"),
        (["--probs", "0.5,0.5", "--target", "1.5"], "not a class index"),
        (["--probs", "0.5,x", "--target", "0"], "'x' is not a number"),
        (["--logits", "1,nan", "--target", "0"], "not a finite number"),
        (["--probs", "0.5,0.5", "--target", "0,0"], "all weights are zero"),
        (["--probs", "0.5,0.5", "--target", "-1,2"], "cannot be negative"),
        (["--probs", "0.5,0.5", "--logits", "1,2", "--target", "0"], "(got --probs and --logits)"),
        (["--probs", "0.5,0.5"], "needs --target"),
        (["--text", "The cat", "--target", "0"], "--target goes with --probs or --logits"),
        ([], "give exactly one of --probs, --logits or --text"),
    ],
)
def test_errors_are_one_line(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2  # the numbers given do not make a distribution: a usage error
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptloss: error: ") and message in lines[0], result.stderr


def test_text_positions_equal_tokens(model_dirs, tmp_path: Path) -> None:
    text = "The cat sat on the mat. The dog sat"
    path = tmp_path / "t.txt"
    path.write_bytes(text.encode())
    model = model_dirs["llama"]
    tokens = gptloss("tokens", path, "--model", model, "--format", "json")
    assert tokens.exit_code == 0, tokens.stderr
    expected = json.loads(tokens.stdout)["documents"][0]["tokens"]
    data = explained("--text", text, "--model", model)
    assert data["input"] == "text" and data["text"] == text and data["model"]["spec"] == str(model)
    positions = data["positions"]
    assert len(positions) == len(expected) > 5
    for got, want in zip(positions, expected, strict=True):
        for key in ("index", "token_id", "token", "start", "end", "rank"):
            assert got[key] == want[key]
        for key in ("nll", "logprob", "prob", "entropy"):
            assert math.isclose(got[key], want[key], rel_tol=1e-9, abs_tol=1e-12)
        assert [c["token_id"] for c in got["top"]] == [c["token_id"] for c in want["top"]]
        for a, b in zip(got["top"], want["top"], strict=True):
            assert math.isclose(a["logprob"], b["logprob"], rel_tol=1e-9, abs_tol=1e-12)
    nll = [p["nll"] for p in positions]
    for i, p in enumerate(positions):
        mean = math.fsum(nll[: i + 1]) / (i + 1)
        assert math.isclose(p["running_mean_nll"], mean, rel_tol=1e-12)
        assert math.isclose(p["running_perplexity"], math.exp(mean), rel_tol=1e-12)
    assert math.isclose(data["mean_nll"], math.fsum(nll) / len(nll), rel_tol=1e-12)
    assert math.isclose(data["perplexity"], math.exp(data["mean_nll"]), rel_tol=1e-12)


def test_text_table_and_nothing_to_score(model_dirs) -> None:
    result = run("--text", "The cat sat", "--model", model_dirs["llama-nobos"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    for word in ("context", "target", "rank", "top 5", "PPL", "the first token is context only"):
        assert word in result.stdout
    result = run("--text", "", "--model", model_dirs["llama"])
    assert result.exit_code == 1 and "nothing to score" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_huge_target_weights_are_one_line() -> None:
    result = gptloss("explain", "--probs", "0.5,0.5", "--target", "1e308,1e308")
    assert result.exit_code == 2 and "too large" in result.stderr and "Traceback" not in result.stderr
