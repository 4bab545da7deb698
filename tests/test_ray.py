"""gptloss[ray]: the Scorer class in a Ray Data pipeline, and `annotate --engine ray`, against annotate's local
engine: whatever the engine, the batch format or the number of workers, a row's scores are the same (to the
relative tolerance of runs whose batches differ).

Under CI the extra is installed (`make ray`) and these tests must run; elsewhere they are skipped when ray is
missing. They share one Ray cluster of 2 CPUs (started after the test of the command line that starts its own).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import BATCH_RTOL, one_line_error, run, usage_error

try:
    import ray
    import ray.data
except Exception as error:  # noqa: BLE001 - ImportError, or a Ray that cannot load
    if os.environ.get("CI"):
        raise
    pytest.skip(f"ray is not usable ({error}): make ray", allow_module_level=True)

import pyarrow as pa
import pyarrow.parquet as pq

from gptloss_cli.ray import Scorer

TEXTS = [
    "The cat sat on the mat. The dog sat on the log.",
    None,  # a null text: null scores and an error
    "Perplexity is the exponential of the mean negative log-likelihood. " * 6,  # several windows
    "",  # an empty text
    "Zählt die Wörter, 42 Äpfel und 7 Birnen; naïve café.",
    "1. screws: 312\n2. bolts: 48\n3. glue: 3 bottles\n",
    "def plan(length, size, step):\n    return [range(i, i + size) for i in range(0, length, step)]\n",
]
ROWS = [{"id": i, "text": text, "lang": "de" if i == 4 else "en"} for i, text in enumerate(TEXTS)]
SCORE_COLUMNS = [
    "gptloss_tokens",
    "gptloss_nll_sum",
    "gptloss_mean_nll",
    "gptloss_perplexity",
    "gptloss_bits_per_byte",
    "gptloss_error",
]


def assert_rows_close(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The same rows with the same columns in the same order: floats to BATCH_RTOL, all else exactly."""
    assert len(got) == len(expected)
    for row, want in zip(got, expected, strict=True):
        assert list(row) == list(want), (list(row), list(want))
        for key, value in want.items():
            if isinstance(value, float):
                assert isinstance(row[key], float) and math.isclose(row[key], value, rel_tol=BATCH_RTOL), (key, row)
            else:
                assert row[key] == value, (key, row[key], value)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return list(pq.read_table(path).to_pylist())
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Parquet and a JSON Lines file of the same rows."""
    folder = tmp_path_factory.mktemp("ray") / "corpus"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS), folder / "a.parquet")
    (folder / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def expected(corpus: Path, model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """annotate's output with the local engine."""
    out = tmp_path_factory.mktemp("local") / "out"
    result = run("annotate", corpus, "-o", out, "-m", model_dirs["llama"], "--chunk-rows", 3)
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def local_rows(expected: Path) -> list[dict[str, Any]]:
    rows = read_rows(expected / "a.parquet")
    assert [r["gptloss_error"] for r in rows][1:4] == ["column 'text' is null", None, "empty text"]
    assert rows[0]["gptloss_tokens"] > 0 and rows[1]["gptloss_tokens"] is None
    return rows


@pytest.fixture(scope="module")
def cluster() -> Any:
    """One local Ray cluster of 2 CPUs for the tests that use one."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_annotate_engine_ray_equals_the_local_engine(
    corpus: Path, expected: Path, model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """--engine ray --workers 2 on a Parquet and a JSON Lines file of three chunks each: every row, every column
    and the scores as the local engine wrote them; the local Ray it started is shut down at the end."""
    assert not ray.is_initialized()
    out = tmp_path / "out"
    args = ["annotate", corpus, "-o", out, "-m", model_dirs["llama"], "--chunk-rows", 3]
    result = run(*args, "--engine", "ray", "--workers", 2)
    assert result.exit_code == 0, result.stderr
    assert not ray.is_initialized()
    for name in ("a.parquet", "b.jsonl"):
        got, want = read_rows(out / name), read_rows(expected / name)
        assert [{k: r[k] for k in ROWS[0]} for r in got] == ROWS  # the original columns, unchanged
        assert_rows_close(got, want)
    assert pq.read_schema(out / "a.parquet") == pq.read_schema(expected / "a.parquet")


def test_scorer_takes_each_batch_format(model_dirs: dict[str, Path], local_rows: list[dict[str, Any]]) -> None:
    """Called directly on a batch as pyarrow, pandas and numpy: the same kind back, with annotate's scores."""
    scorer = Scorer(str(model_dirs["llama"]), batch_size=4)
    table = pa.Table.from_pylist(ROWS)
    got = scorer(table)
    assert isinstance(got, pa.Table) and got.column_names == [*ROWS[0], *SCORE_COLUMNS]
    assert got.schema.field("gptloss_tokens").type == pa.int64()
    assert got.schema.field("gptloss_error").type == pa.string()
    assert_rows_close(got.to_pylist(), local_rows)

    frame = scorer(table.to_pandas())
    assert str(frame["gptloss_tokens"].dtype) == "Int64" and str(frame["gptloss_perplexity"].dtype) == "Float64"
    assert_rows_close(pa.Table.from_pandas(frame).to_pylist(), local_rows)

    arrays = scorer({name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names})
    assert isinstance(arrays, dict) and list(arrays) == [*ROWS[0], *SCORE_COLUMNS]
    assert arrays["gptloss_tokens"].dtype == object and arrays["gptloss_tokens"][1] is None
    assert_rows_close(pa.Table.from_pydict(arrays).to_pylist(), local_rows)


def test_scorer_refuses_a_batch_without_the_text_or_already_scored(model_dirs: dict[str, Path]) -> None:
    from gptloss_cli.errors import GptlossError

    scorer = Scorer(str(model_dirs["llama"]), text_column="body")
    with pytest.raises(GptlossError, match="no column 'body'"):
        scorer(pa.table({"text": ["a"]}))
    with pytest.raises(GptlossError, match="already has a column 'gptloss_tokens'"):
        scorer(pa.table({"body": ["a"], "gptloss_tokens": [1]}))


def test_scorer_in_a_ray_data_pipeline(
    cluster: Any, corpus: Path, model_dirs: dict[str, Path], local_rows: list[dict[str, Any]]
) -> None:
    """map_batches(Scorer) on a pool of 2 actors, over blocks of 2 rows as pyarrow, and read_parquet -> map_batches in
    Ray's default numpy format: each row's scores as annotate's, nulls as nulls."""
    kwargs = {"model": str(model_dirs["llama"]), "batch_size": 4}
    data = ray.data.from_items(ROWS, override_num_blocks=4).map_batches(
        Scorer,
        fn_constructor_kwargs=kwargs,
        compute=ray.data.ActorPoolStrategy(size=2),
        num_cpus=0.5,
        batch_format="pyarrow",
        batch_size=2,
    )
    got = sorted(data.take_all(), key=lambda row: row["id"])
    assert_rows_close(got, local_rows)
    schema = data.schema()
    assert schema is not None and schema.types[schema.names.index("gptloss_tokens")] == pa.int64()

    numpy = ray.data.read_parquet(str(corpus / "a.parquet")).map_batches(
        Scorer, fn_constructor_kwargs=kwargs, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.5, batch_size=3
    )
    assert_rows_close(sorted(numpy.take_all(), key=lambda row: row["id"]), local_rows)


def test_a_failing_worker_is_one_line(cluster: Any, model_dirs: dict[str, Path]) -> None:
    """An actor whose model cannot be loaded: one GptlossError line naming why, and no actor left."""
    from gptloss_cli.core.plan import WindowSettings
    from gptloss_cli.errors import GptlossError
    from gptloss_cli.models.spec import ModelRequest
    from gptloss_cli.ray import RayEngine
    from gptloss_cli.tasks.analyses import Analyses
    from gptloss_cli.tasks.rows import row_options

    missing = str(model_dirs["llama"].parent / "no-such-model")
    engine = RayEngine(ModelRequest(missing), row_options(), WindowSettings(), Analyses(), None, 1)
    with pytest.raises(GptlossError) as caught:
        with engine:
            pass
    message = str(caught.value)
    assert message.startswith("a Ray worker") and "no-such-model" in message and "\n" not in message
    assert engine.actors == [] and ray.is_initialized()  # a Ray it joined is left running


def test_engine_options_need_engine_ray(corpus: Path, tmp_path: Path) -> None:
    usage_error(run("annotate", corpus, "-o", tmp_path / "o", "--workers", 2), "--engine ray")
    usage_error(run("annotate", corpus, "-o", tmp_path / "o", "--address", "auto"), "--engine ray")


def test_engine_ray_without_ray_says_how_to_install(
    corpus: Path, model_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as when it is not installed
    result = run("annotate", corpus, "-o", tmp_path / "o", "-m", model_dirs["llama"], "--engine", "ray")
    one_line_error(result, "--engine ray needs pip install 'gptloss[ray]'")
