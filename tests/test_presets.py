"""A preset lives in one place: a toy preset, defined and registered here alone, runs through score, --resume
and merge like the built-in ones. And the laws of the Accumulator every total is assembled with."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from conftest import BATCH_RTOL, CORPUS, assert_totals_close, run, stopped_after

from gptloss_cli.core.analyses import PositionBuckets
from gptloss_cli.core.presets import Layout, PeerCounts, PeerFigures, Preset, preset, register, unregister
from gptloss_cli.core.totals import Bootstrap, Totals
from gptloss_cli.core.windows import Window
from gptloss_cli.models.loader import load_model
from gptloss_cli.tasks.accumulator import Accumulator, DocumentScore
from gptloss_cli.tasks.analyses import DocumentAnalyses


@dataclass(frozen=True)
class EverySecondFigures(PeerFigures):
    key: ClassVar[str] = "every_second"
    perplexity: float | None
    windows: int


class EverySecond(Preset):
    """Every second token (x1, x3, ...) scored from the one token before it; no BOS. Its peer figures: the
    perplexity of those tokens and how many windows made them."""

    name = "every-second"
    peer_key = "every_second"
    takes_bos = takes_stride = takes_masks = False
    tokenization = "no special tokens"
    bos_rule = "none added"
    aggregation = "micro average over scored tokens"
    why = "one token of context for every second token"
    summary = "a toy"

    def starts(self, tokenizer: Any, bos: int | None) -> tuple[int | None, int | None]:
        return None, None

    def windows(self, doc: int, n: int, layout: Layout) -> list[Window]:
        return [Window(doc, k - 1, k + 1, k) for k in range(1, n, 2)]

    def counts(self, text: str, windows: Sequence[Window], positions: np.ndarray, nll: np.ndarray) -> PeerCounts:
        return PeerCounts(windows=len(windows))

    def counts_from_total(self, total: dict[str, Any]) -> PeerCounts:
        return PeerCounts(windows=int(total["every_second"]["windows"]))

    def peer_numbers(self, total: Totals, counts: PeerCounts) -> PeerFigures | None:
        return EverySecondFigures(perplexity=total.perplexity, windows=counts.windows)


@pytest.fixture
def every_second():
    registered = register(EverySecond())
    yield registered
    unregister(registered.name)


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("texts")
    for i, text in enumerate(CORPUS):
        (root / f"t{i}.txt").write_text(text * (1 + i % 2), encoding="utf-8")
    return sorted(root.iterdir())


def independent_nll(model_dir: Path, paths: list[Path]) -> tuple[float, int]:
    """Σ NLL of every odd-numbered token given the token before it, from the model's own logits."""
    loaded = load_model(str(model_dir))
    total, count = [], 0
    for path in paths:
        ids = loaded.tokenizer.encode(path.read_text(encoding="utf-8"), False)[0].tolist()
        for k in range(1, len(ids), 2):
            with torch.inference_mode():
                logits = loaded.model(input_ids=torch.tensor([ids[k - 1 : k + 1]])).logits[0, 0].double()
            total.append(-float(torch.log_softmax(logits, -1)[ids[k]]))
            count += 1
    return math.fsum(total), count


def test_a_preset_registered_alone_runs_through_score_resume_and_merge(
    every_second, model_dirs, texts, tmp_path: Path, monkeypatch
) -> None:
    common = ("score", *texts, "-m", model_dirs["llama"], "--protocol", "every-second", "--batch-size", 2)
    whole = run(*common, "-f", "json")
    assert whole.exit_code == 0, whole.stderr
    data = json.loads(whole.stdout)
    card, total = data["settings"]["protocol"], data["total"]
    expected, count = independent_nll(model_dirs["llama"], texts)
    assert card["name"] == "every-second" and card["bos"] == "none added" and card["stride"] is None
    assert total["tokens_scored"] == count == total["every_second"]["windows"] == card["windows"]
    assert math.isclose(total["nll_sum"], expected, rel_tol=1e-5)  # float32 model against float64 sums
    assert total["every_second"]["perplexity"] == total["perplexity"]

    # --resume: stopped after two documents, carried on: the same total as one run writes
    from gptloss_cli.tasks import score as api

    one = tmp_path / "one.jsonl"
    assert run(*common, "-o", one).exit_code == 0
    original = api.ScoreRun.scores

    part = tmp_path / "part.jsonl"
    monkeypatch.setattr(api.ScoreRun, "scores", stopped_after(original, 2))
    assert run(*common, "-o", part).exit_code == 130
    monkeypatch.setattr(api.ScoreRun, "scores", original)
    assert run(*common, "-o", part, "--resume").exit_code == 0
    last = json.loads(one.read_text().splitlines()[-1])["total"]
    assert json.loads(part.read_text().splitlines()[-1])["total"] == last

    # merge: two shards joined give the single run's total, its peer figures rebuilt from the shards' counts
    shards = [tmp_path / f"s{i}.jsonl" for i in range(2)]
    for i, path in enumerate(shards):
        assert run(*common, "--shard", f"{i}/2", "-o", path).exit_code == 0
    merged = run("merge", *shards, "-f", "json")
    assert merged.exit_code == 0, merged.stderr
    got = json.loads(merged.stdout)["total"]
    assert got["every_second"]["windows"] == last["every_second"]["windows"]
    assert math.isclose(got["every_second"]["perplexity"], last["every_second"]["perplexity"], rel_tol=BATCH_RTOL)
    assert_totals_close(
        {k: got[k] for k in last if k != "every_second"}, {k: v for k, v in last.items() if k != "every_second"}
    )


def test_an_unknown_protocol_is_one_line(model_dirs, texts) -> None:
    result = run("score", texts[0], "-m", model_dirs["llama"], "--protocol", "every-second")
    assert result.exit_code == 2 and "every-second" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(Exception, match="no such protocol"):
        preset("every-second")


# The Accumulator's laws, on random documents.


def random_scores(rng: random.Random, count: int, labelled: bool = True) -> list[DocumentScore]:
    out = []
    for index in range(count):
        n = rng.randint(0, 40)
        nll = np.array([rng.expovariate(0.4) for _ in range(n)])
        context = np.array([rng.randint(1, 60) for _ in range(n)], dtype=np.int64)
        totals = Totals.from_nll(nll, rng.randint(n, 4 * n + 1), rng.randint(0, n + 1))
        recipe = (math.fsum(nll.tolist()) * rng.random(), n)
        found = DocumentAnalyses(PositionBuckets.of(context, nll, 16), None, rng.randint(0, 1) if labelled else None)
        counts = PeerCounts(rng.randint(0, 3), rng.randint(0, 50), rng.randint(0, 300), recipe)
        out.append(DocumentScore(f"d{index}", totals, None, index, counts, found))
    return out


def relative_equal(a: Any, b: Any, rel: float = 1e-12) -> None:
    """Two totals' dicts equal: numbers to `rel`, the rest exactly; never NaN."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            relative_equal(a[key], b[key], rel)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            relative_equal(x, y, rel)
    elif isinstance(a, float):
        assert not math.isnan(a) and math.isclose(a, b, rel_tol=rel), (a, b)
    else:
        assert a == b


@pytest.mark.parametrize("name", ["gptloss", "lm-eval", "llama.cpp", "hf-stride", "gptq"])
def test_accumulator_merge_is_associative_and_order_free(name: str) -> None:
    rng = random.Random(7)
    chosen = preset(name)
    scores = random_scores(rng, 30)
    boot = Bootstrap(50, 1)
    whole = Accumulator(chosen, 16, scores).compute(boot).to_dict()
    for _ in range(5):
        shuffled = scores[:]
        rng.shuffle(shuffled)
        cuts = sorted(rng.sample(range(1, len(scores)), 2))
        a, b, c = (Accumulator(chosen, 16, part) for part in np.split(np.array(shuffled, dtype=object), cuts))
        left, right = a.merge(b).merge(c), a.merge(b.merge(c))
        relative_equal(left.compute(boot).to_dict(), whole)
        relative_equal(right.compute(boot).to_dict(), whole)
        relative_equal(c.merge(a).merge(b).compute(boot).to_dict(), whole)
    one_by_one = Accumulator(chosen, 16)
    for score in reversed(scores):
        one_by_one.update(score)
    relative_equal(one_by_one.compute(boot).to_dict(), whole)


def test_accumulator_refuses_a_document_twice() -> None:
    scores = random_scores(random.Random(1), 4)
    first = Accumulator(preset("gptloss"), None, scores[:3])
    with pytest.raises(Exception, match="counted twice"):
        first.merge(Accumulator(preset("gptloss"), None, scores[2:]))


@pytest.mark.parametrize("name", ["gptloss", "lm-eval", "llama.cpp", "hf-stride", "gptq"])
def test_an_empty_accumulator_gives_nulls_not_nan(name: str) -> None:
    total = Accumulator(preset(name), 16).compute(Bootstrap(20)).to_dict()
    text = json.dumps(total, allow_nan=False)  # raises on NaN or infinity
    assert total["tokens_scored"] == 0 and total["documents"] == 0
    assert total["perplexity"] is None and total["mean_nll"] is None and total["bits_per_byte"] is None
    assert total["macro_mean_perplexity"] is None and total["bootstrap_ci95"] is None
    assert "NaN" not in text
