"""Scaling out: ranks under torchrun (gloo on CPU) give one process's numbers; shards merge into one run; a
run file resumes at any width; a failing rank stops the job in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import BATCH_RTOL, assert_totals_close, launch, run, usage_error

TEXTS = {
    "a.txt": "The cat sat on the mat. The dog sat on the log. " * 12,
    "b.txt": "Perplexity is the exponential of the mean negative log-likelihood.",
    "c.txt": "Zählt die Wörter, 42 Äpfel und 7 Birnen; naïve café. " * 4,
    "d.txt": "1. screws: 312\n2. bolts: 48\n3. glue: 3 bottles\n",
    "e.txt": "",
}
WINDOWS = ("--max-length", 24, "--stride", 12, "--batch-size", 3)


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("texts")
    for name, text in TEXTS.items():
        (root / name).write_text(text, encoding="utf-8")
    return [root / name for name in TEXTS]


def gptloss_lines(stderr: str) -> list[str]:
    """What gptloss itself said on stderr (torchrun adds its own banner and report)."""
    return [line for line in stderr.splitlines() if line.startswith(("gptloss:", "warning:"))]


def test_two_ranks_give_one_process_numbers(model_dirs, texts, tmp_path: Path) -> None:
    common = ("-m", model_dirs["llama"], *WINDOWS)
    one = run("score", *texts, *common, "-f", "json")
    assert one.exit_code == 0, one.stderr
    two = launch(2, "score", *texts, *common, "-o", tmp_path / "two.json")
    assert two.returncode == 0, two.stderr
    expected, got = json.loads(one.stdout), json.loads((tmp_path / "two.json").read_text())
    assert [d["source"] for d in got["documents"]] == [d["source"] for d in expected["documents"]]
    for g, e in zip(got["documents"] + [got["total"]], expected["documents"] + [expected["total"]], strict=True):
        assert_totals_close(g, e, BATCH_RTOL)
    assert got["settings"]["protocol"] == expected["settings"]["protocol"]
    # the empty file is reported once, by rank 0, not once per rank
    assert gptloss_lines(two.stderr) == ["warning: " + f"{texts[-1]}: nothing to score (0 tokens)"]


def test_two_ranks_stream_the_same_token_records(model_dirs, texts, tmp_path: Path) -> None:
    common = ("tokens", *texts[:4], "-m", model_dirs["gemma3"], *WINDOWS, "-f", "jsonl", "--top-k", 3)
    one = run(*common)
    assert one.exit_code == 0, one.stderr
    two = launch(2, *common, "-o", tmp_path / "two.jsonl")
    assert two.returncode == 0, two.stderr
    expected = [json.loads(x) for x in one.stdout.splitlines()]
    got = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert got[0] == expected[0] and len(got) == len(expected) > 100
    for g, e in zip(got[1:], expected[1:], strict=True):  # document order, then position order
        assert (g["source"], g["index"], g["token_id"], g["rank"], g["context"]) == (
            e["source"],
            e["index"],
            e["token_id"],
            e["rank"],
            e["context"],
        )
        assert g["nll"] == pytest.approx(e["nll"], rel=BATCH_RTOL, abs=1e-9)
        assert [t["token_id"] for t in g["top"]] == [t["token_id"] for t in e["top"]]


def test_shares_are_token_balanced_and_deterministic() -> None:
    from gptloss_cli.core.distributed import Shard, share

    sizes = [1024] * 7 + [500, 300, 20, 20, 3]  # one long book's windows, then short documents
    shares = share(sizes, 3)
    assert sorted(i for s in shares for i in s) == list(range(len(sizes)))
    loads = [sum(sizes[i] for i in s) for s in shares]
    assert max(loads) - min(loads) <= max(sizes)
    assert all(s == sorted(s) for s in shares) and share(sizes, 3) == shares
    docs = [Shard(i, 3).documents([5, 90, 7, 40, 40, 1]) for i in range(3)]
    assert set().union(*docs) == set(range(6)) and sum(len(d) for d in docs) == 6
    assert docs[0] == {1} and Shard(0, 3).documents([5, 90, 7, 40, 40, 1]) == docs[0]


def test_exchange_bytes_round_trip() -> None:
    from gptloss_cli.core.distributed import decode, encode

    arrays = {
        "positions": np.arange(5, dtype=np.int64),
        "v.nll": np.linspace(0, 1, 5),
        "v.same": np.array([True, False, True, True, False]),
        "v.top": np.arange(10, dtype=np.int64).reshape(5, 2),
        "v.none": np.zeros((0, 3), dtype=np.float32),
    }
    [(number, back)], error = decode(encode([(7, arrays)]))
    assert number == 7 and error is None
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        assert np.array_equal(back[name], array)
    assert decode(encode([], "rank trouble")) == ([], "rank trouble")


def test_shards_merge_into_the_single_run(model_dirs, texts, tmp_path: Path) -> None:
    common = ("score", *texts, "-m", model_dirs["llama"], *WINDOWS)
    whole = tmp_path / "whole.jsonl"
    assert run(*common, "-o", whole).exit_code == 0
    shards = [tmp_path / f"s{i}.jsonl" for i in range(3)]
    for i, path in enumerate(shards):
        result = run(*common, "--shard", f"{i}/3", "-o", path)
        assert result.exit_code == 0, result.stderr
        assert json.loads(path.read_text().splitlines()[0])["shard"] == {"index": i, "count": 3}
    held = [{json.loads(x)["index"] for x in p.read_text().splitlines()[1:-1]} for p in shards]
    assert set().union(*held) == set(range(len(texts))) and sum(map(len, held)) == len(texts)
    merged = run("merge", shards[2], shards[0], shards[1], "-o", tmp_path / "merged.jsonl")
    assert merged.exit_code == 0, merged.stderr
    expected = [json.loads(x) for x in whole.read_text().splitlines()]
    got = [json.loads(x) for x in (tmp_path / "merged.jsonl").read_text().splitlines()]
    assert got[0] == expected[0] and len(got) == len(expected)
    assert [x["index"] for x in got[1:-1]] == list(range(len(texts)))  # a single run writes them as they finish
    for g, e in zip(got[1:-1], sorted(expected[1:-1], key=lambda x: x["index"]), strict=True):
        assert g["index"] == e["index"] and g["source"] == e["source"]
        assert_totals_close(g, e)
    assert_totals_close(got[-1]["total"], expected[-1]["total"])
    as_json = run("merge", *shards, "-f", "json")
    assert (
        as_json.exit_code == 0
        and json.loads(as_json.stdout)["total"]["tokens_scored"] == got[-1]["total"]["tokens_scored"]
    )


def test_merge_names_what_is_missing_or_foreign(model_dirs, texts, tmp_path: Path) -> None:
    from conftest import one_line_error

    common = ("score", *texts, "-m", model_dirs["llama"], *WINDOWS)
    paths = [tmp_path / f"s{i}.jsonl" for i in range(3)]
    for i, path in enumerate(paths[:2]):
        assert run(*common, "--shard", f"{i}/3", "-o", path).exit_code == 0
    one_line_error(run("merge", *paths[:2]), "shard 2/3 missing")
    one_line_error(run("merge", paths[0], paths[0], paths[1]), "shard 0/3 is given twice")
    assert run("score", *texts, "-m", model_dirs["llama"], "--max-length", 16, "--shard", "2/3", "-o", paths[2])
    one_line_error(run("merge", *paths), "not shards of one job", "max_length")
    unfinished = tmp_path / "cut.jsonl"
    unfinished.write_text("\n".join(paths[1].read_text().splitlines()[:-1]) + "\n")
    one_line_error(run("merge", paths[0], unfinished), "is not finished")
    usage_error(run("score", *texts, "-m", model_dirs["llama"], "--shard", "3/3", "-o", paths[2]), "--shard 3/3")
    usage_error(run("score", *texts, "-m", model_dirs["llama"], "--shard", "0/3"), "--shard needs --output")


def test_a_run_stopped_under_two_ranks_resumes_under_one_and_three(model_dirs, texts, tmp_path: Path) -> None:
    common = ("score", *texts, "-m", model_dirs["llama"], *WINDOWS)
    whole = tmp_path / "whole.jsonl"
    assert launch(2, *common, "-o", whole).returncode == 0
    lines = whole.read_text().splitlines()
    expected = json.loads(lines[-1])["total"]
    for ranks in (1, 3):
        part = tmp_path / f"part{ranks}.jsonl"  # as a run stopped after two documents leaves it
        part.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
        if ranks == 1:
            result = run(*common, "-o", part, "--resume")
            assert result.exit_code == 0, result.stderr
        else:
            launched = launch(ranks, *common, "-o", part, "--resume")
            assert launched.returncode == 0, launched.stderr
        got = [json.loads(x) for x in part.read_text().splitlines()]
        assert sorted(x["index"] for x in got[1:-1]) == list(range(len(texts)))
        assert_totals_close(got[-1]["total"], expected)


def test_a_failing_rank_stops_the_job_in_one_line(model_dirs, texts, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    from gptloss_cli.core import engine\n"
        "    def broken(self, docs, batch, plan):\n"
        "        raise RuntimeError('CUDA out of memory (simulated)')\n"
        "    engine.Scorer._batch = broken\n"
    )
    out = tmp_path / "out.json"
    result = launch(2, "score", *texts, "-m", model_dirs["llama"], *WINDOWS, "-o", out, env={"PYTHONPATH": str(hook)})
    assert result.returncode != 0
    said = gptloss_lines(result.stderr)
    assert said == ["gptloss: error: rank 1: RuntimeError: CUDA out of memory (simulated)"], result.stderr
    assert not out.exists() and not list(tmp_path.glob("*.json*"))


def test_device_map_auto_places_the_model_and_keeps_the_numbers(model_dirs, texts) -> None:
    common = ("score", *texts[:4], "-m", model_dirs["gemma3"], *WINDOWS, "-f", "json")
    plain, placed = run(*common), run(*common, "--device-map", "auto")
    assert plain.exit_code == 0 and placed.exit_code == 0, placed.stderr
    a, b = json.loads(plain.stdout), json.loads(placed.stdout)
    assert "device_map" not in a["model"] and set(b["model"]["device_map"].values()) == {"cpu"}
    assert_totals_close(b["total"], a["total"])


def test_an_offloaded_head_runs_as_a_module(model_dirs, texts, tmp_path: Path) -> None:
    """--device-map may leave the LM head's weight on the meta device (offloaded; hooks bring it in when the
    module runs): the numbers must be the plain model's, not those of a weight that is not there."""
    from dataclasses import replace

    from transformers import AutoModelForCausalLM

    from gptloss_cli.core.plan import WindowSettings
    from gptloss_cli.inputs.document import Document
    from gptloss_cli.models.hf import TransformersBackend
    from gptloss_cli.models.loader import load_model
    from gptloss_cli.models.spec import LoadedModel
    from gptloss_cli.tasks.score import ScoreRun

    path = model_dirs["llama"]
    offloaded = AutoModelForCausalLM.from_pretrained(
        path, device_map={"model": "cpu", "lm_head": "disk"}, offload_folder=str(tmp_path / "offload")
    )
    assert offloaded.lm_head.weight.device.type == "meta"
    plain = load_model(str(path))
    placed = LoadedModel(TransformersBackend(offloaded), plain.tokenizer, replace(plain.info, device="cpu"))
    docs = [Document(TEXTS["a.txt"], "a")]
    settings = WindowSettings(max_length=24, stride=12)
    got, expected = ScoreRun(placed, docs, settings).run().total, ScoreRun(plain, docs, settings).run().total
    assert got.tokens_scored == expected.tokens_scored
    assert math.isclose(got.nll_sum, expected.nll_sum, rel_tol=1e-5)


def test_an_empty_shard_still_writes_its_file(model_dirs, texts, tmp_path: Path) -> None:
    common = ("score", *texts, "-m", model_dirs["llama"], *WINDOWS)
    shards = [tmp_path / f"s{i}.jsonl" for i in range(7)]  # more shards than documents
    for i, path in enumerate(shards):
        result = run(*common, "--shard", f"{i}/7", "-o", path)
        assert result.exit_code == 0, result.stderr
    merged = run("merge", *shards, "-f", "json")
    whole = run(*common, "-f", "json")
    assert merged.exit_code == 0, merged.stderr
    assert_totals_close(
        {k: v for k, v in json.loads(merged.stdout)["total"].items() if k != "documents"},
        {k: v for k, v in json.loads(whole.stdout)["total"].items() if k != "documents"},
    )


def test_merge_refuses_broken_headers_and_mixed_bootstraps(model_dirs, texts, tmp_path: Path) -> None:
    from conftest import one_line_error

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema": "gptloss.score-run/v1"}\n{"total": {}}\n', encoding="utf-8")
    one_line_error(run("merge", bad), "not a gptloss score run")
    common = ("score", *texts, "-m", model_dirs["llama"], *WINDOWS)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert run(*common, "--shard", "0/2", "--bootstrap", 50, "-o", a).exit_code == 0
    assert run(*common, "--shard", "1/2", "-o", b).exit_code == 0
    one_line_error(run("merge", a, b), "different --bootstrap")


def test_the_world_is_read_from_the_launchers_variables_once() -> None:
    """World.launched reads what torchrun and accelerate launch set; alone (or unreadable), SOLO. The console
    speaks for the World it was given at start-up, not for the environment of the moment."""
    from gptloss_cli.cli import console
    from gptloss_cli.core.distributed import SOLO, World

    launched = {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}
    assert World.launched(launched) == World(rank=2, size=4, local_rank=0, local_size=2)
    assert World.launched({}) is SOLO and World.launched({"WORLD_SIZE": "1", "RANK": "3"}) is SOLO
    assert World.launched({"WORLD_SIZE": "two"}) is SOLO
    assert World.launched({"LOCAL_WORLD_SIZE": "2"}) == World(local_size=2)  # --device-map auto refuses it
    try:
        console.start(World.launched(launched))
        assert not console.leader() and console.world().rank == 2
    finally:
        console.start(SOLO)
    assert console.leader()


def test_a_follower_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from gptloss_cli.cli import console
    from gptloss_cli.core.distributed import SOLO, World

    try:
        console.start(World(rank=1, size=2))
        console.warn("only rank 0 says this")
        console.emit("data\n", None)
    finally:
        console.start(SOLO)
    assert capsys.readouterr() == ("", "")
    console.emit("data\n", None)
    assert capsys.readouterr().out == "data\n"
