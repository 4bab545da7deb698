"""The public API as the README shows it (`from gptloss_cli import ...`), against the model's own loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import labels_loss_sum

import gptloss_cli
from gptloss_cli import (
    DatasetOptions,
    Document,
    GptlossError,
    WindowSettings,
    compare_documents,
    load_model,
    read_dataset,
    score_documents,
)

TEXT = "The cat sat on the mat."


def test_every_exported_name_resolves() -> None:
    for name in gptloss_cli.__all__:
        assert getattr(gptloss_cli, name) is not None, name
    with pytest.raises(AttributeError):
        _ = gptloss_cli.no_such_name


def test_readme_library_example(model_dirs) -> None:
    lm = load_model(str(model_dirs["llama"]))
    result = score_documents(lm, [Document(TEXT, "cat")], WindowSettings(max_length=64))
    ids = [lm.tokenizer.bos_token_id, *lm.tokenizer.encode(TEXT)[0].tolist()]
    expected, count = labels_loss_sum(lm.model, ids)
    nll = result.documents[0].losses.nll  # per-token NLL in nats
    assert nll.shape == (count,) and math.isclose(float(nll.sum()), expected, rel_tol=1e-5)
    assert math.isclose(result.total.perplexity, math.exp(expected / count), rel_tol=1e-5)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["schema"] == "gptloss.score/v1" and data["total"]["tokens_scored"] == count


def test_readme_dataset_example(model_dirs, tmp_path: Path) -> None:
    rows = [{"prompt": f"Question {i}: ", "completion": f"answer number {i}."} for i in range(6)]
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    lm = load_model(str(model_dirs["gpt2"]))
    records = read_dataset(DatasetOptions(str(path), prompt_column="prompt", completion_column="completion"))
    result = score_documents(lm, records.items, bootstrap=200, seed=0)  # completion tokens only
    total = result.total_dict()
    low, high = total["bootstrap_ci95"]
    assert low <= result.total.perplexity <= high
    assert total["macro_mean_perplexity"] == pytest.approx(np.mean([d.totals.perplexity for d in result.documents]))
    whole = score_documents(lm, [Document(r["prompt"] + r["completion"], "x") for r in rows])
    assert result.total.tokens_scored < whole.total.tokens_scored  # the prompts are context only


def test_compare_documents_of_a_model_with_itself(model_dirs) -> None:
    lm = load_model(str(model_dirs["gemma3"]))
    result = compare_documents(lm, lm, [Document(TEXT, "t")])
    assert result.same_vocabulary and result.paired.n > 0
    assert result.paired.mean_delta_nll == 0.0 and result.paired.ppl_ratio == 1.0
    assert result.distribution is not None and result.distribution.mean_kld == pytest.approx(0.0, abs=1e-6)
    assert result.to_dict()["paired"]["n"] == result.paired.n


def test_library_errors_are_gptloss_errors(model_dirs) -> None:
    lm = load_model(str(model_dirs["gpt2"]))
    with pytest.raises(GptlossError, match="exceeds"):
        score_documents(lm, [Document(TEXT, "t")], WindowSettings(max_length=10_000))
