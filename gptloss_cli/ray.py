"""Ray: score rows on Ray actors, each with the model loaded once (the optional extra `gptloss[ray]`).

`Scorer` is a Ray Data callable class: a user drops it into a pipeline, and each actor loads the model once and
adds annotate's score columns to every batch it is given::

    import ray
    from gptloss_cli.ray import Scorer

    (ray.data.read_parquet("corpus/")
        .map_batches(Scorer, fn_constructor_kwargs={"model": "gemma-3-270m"}, num_gpus=1,
                     compute=ray.data.ActorPoolStrategy(size=4), batch_format="pyarrow")
        .write_parquet("scored/"))

`RayEngine` is what `gptloss annotate --engine ray` runs: `--workers` actors of the same class, fed the chunks
of annotate's files. A row's scores are those of `annotate` with the local engine, whatever the engine, the
number of workers or the batches (each row is a document of `score`).

Nothing in the package imports this module but the command line, when asked for Ray; Ray itself is imported
only here, when used.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from .core.plan import WindowSettings
from .core.presets import DEFAULT
from .errors import GptlossError, first_line
from .inputs.corpus import Chunk, ColumnType
from .inputs.dataset import DatasetOptions
from .models.spec import DEFAULT_MODEL, Backend, Device, Dtype, ModelRequest
from .tasks.analyses import Analyses
from .tasks.rows import Columns, RowScorer, ScoredRows, row_options

MISSING = "--engine ray needs pip install 'gptloss[ray]'"
ANSI = r"\x1b\[[0-9;]*m"  # colours in Ray's messages
IN_FLIGHT = 2  # chunks sent to each actor before the oldest is waited for


def _ray() -> Any:
    """The ray module; one line saying how to install it when it is missing."""
    try:
        import ray
    except ImportError as exc:
        raise GptlossError(MISSING) from exc
    return ray


class Scorer:
    """Rows into annotate's score columns, with the model loaded once: a Ray Data callable class
    (`map_batches(Scorer, fn_constructor_kwargs={...}, compute=ActorPoolStrategy(size=N))`, or `concurrency=N`
    before Ray 2.51), or a plain object.

    The keywords are annotate's options: which columns make a row's document (`text_column`, or
    `prompt_column` with `completion_column`, or `messages_column` with `score_roles`; `span_column`), the
    windows (`protocol`, `max_length`, `stride`, `batch_size`), the model's `device` and `dtype`, and
    `membership` (Min-K% Prob with k = `min_k`, Min-K%++ and zlib ratio columns).

    A batch comes in any of Ray Data's formats and goes back in the same one, with the columns `types()`
    names appended: a pyarrow.Table (exact types, nulls as nulls: use batch_format="pyarrow" to keep them
    exact), a pandas.DataFrame (nullable Int64, Float64 and string columns), or a dict of numpy arrays (Ray's
    default: a column without a null is int64 or float64; one with a null is an object array holding None).
    A row that cannot be scored (a null or empty text, a malformed chat) gets null scores and `gptloss_error`
    saying why. Inside a Ray actor, torch uses as many threads as the CPUs Ray gave the actor.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        text_column: str = "text",
        prompt_column: str | None = None,
        completion_column: str | None = None,
        messages_column: str | None = None,
        span_column: str | None = None,
        score_roles: Sequence[str] | None = None,
        chat_template: str | Path | None = None,
        protocol: str = DEFAULT,
        max_length: int | None = None,
        stride: int | None = None,
        batch_size: int = 8,
        device: str = "auto",
        dtype: str = "auto",
        membership: bool = False,
        min_k: float = 0.2,
    ) -> None:
        try:
            request = ModelRequest(str(model), Device(device), Dtype(dtype))
        except ValueError as exc:
            raise GptlossError(f"Scorer: {exc}") from exc
        if not 0 < min_k <= 1:
            raise GptlossError(f"Scorer: min_k {min_k}: give a fraction in (0, 1], e.g. 0.2")
        rows = row_options(
            text_column,
            prompt_column,
            completion_column,
            messages_column,
            span_column,
            None if score_roles is None else tuple(score_roles),
            None if chat_template is None else Path(chat_template),
        )
        windows = WindowSettings(max_length, stride, batch_size=batch_size, protocol=protocol)
        self._build(request, rows, windows, Analyses(None, min_k if membership else None))

    def _build(self, request: ModelRequest, rows: DatasetOptions, windows: WindowSettings, analyses: Analyses) -> None:
        from .models.loader import load_model

        _use_given_cpus()
        loaded = load_model(
            request.spec,
            device=request.device,
            dtype=request.dtype,
            trust_remote_code=request.trust_remote_code,
            device_map=request.device_map,
            compile=request.compile,
            backend=request.backend,
        )
        self.scorer = RowScorer(loaded, rows, windows, analyses)

    @property
    def reads(self) -> list[str]:
        """The columns a row's document is made from."""
        return self.scorer.reads

    def types(self) -> dict[str, ColumnType]:
        """The columns appended, in order, with their types (int64, float64, string)."""
        return self.scorer.types()

    def fingerprint(self) -> dict[str, Any]:
        """The model, the windows and the columns, as annotate's resume manifest holds them."""
        return self.scorer.fingerprint()

    def score_records(self, records: Sequence[dict[str, Any]], where: Sequence[str]) -> ScoredRows:
        """The score columns of these rows (plain dicts holding the columns `reads` names; `where`: each row's
        name for messages) and their scored tokens' total."""
        return self.scorer.score(records, where)

    def __call__(self, batch: Any) -> Any:
        """The batch with the score columns appended, in the batch's own format."""
        columns, count = _columns_of(batch)
        taken = [name for name in self.types() if name in columns]
        if taken:
            raise GptlossError(f"the batch already has a column {taken[0]!r} (annotated already?)")
        missing = [name for name in self.reads if name not in columns]
        if missing:
            raise GptlossError(f"the batch has no column {missing[0]!r} (it has {', '.join(map(repr, columns))})")
        records = _records(batch, self.reads, count)
        scored = self.score_records(records, [f"row {i}" for i in range(count)])
        return _appended(batch, scored.columns)


def _use_given_cpus() -> None:
    """Inside a Ray actor or task, torch's threads: the CPUs Ray gave it (at least one)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    try:
        given = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - the driver, or a Ray without this: torch's own default
        return
    if given:
        import torch

        torch.set_num_threads(max(1, int(given)))


# Ray Data's batch formats ------------------------------------------------------------------------------------


def _kind(batch: Any) -> str:
    if isinstance(batch, dict):
        return "numpy"
    module = type(batch).__module__.split(".")[0]
    if module == "pyarrow" and hasattr(batch, "append_column"):
        return "pyarrow"
    if module == "pandas" and hasattr(batch, "assign"):
        return "pandas"
    raise GptlossError(
        f"Scorer: a batch is a dict of numpy arrays, a pyarrow.Table or a pandas.DataFrame, not a "
        f"{type(batch).__name__}"
    )


def _columns_of(batch: Any) -> tuple[list[str], int]:
    """The batch's column names and its number of rows."""
    kind = _kind(batch)
    if kind == "pyarrow":
        return list(batch.column_names), int(batch.num_rows)
    if kind == "pandas":
        return [str(c) for c in batch.columns], len(batch)
    lengths = {len(v) for v in batch.values()}
    if len(lengths) > 1:
        raise GptlossError("Scorer: the batch's columns differ in length")
    return list(batch), lengths.pop() if lengths else 0


def _records(batch: Any, names: Sequence[str], count: int) -> list[dict[str, Any]]:
    """Each row's values of the columns `names`, as plain Python (lists, dicts, str, None for null)."""
    if _kind(batch) == "pyarrow":
        return list(batch.select(list(names)).to_pylist())
    values = {name: [_plain(v) for v in _items(batch[name])] for name in names}
    return [{name: values[name][i] for name in names} for i in range(count)]


def _items(column: Any) -> list[Any]:
    """A numpy array's or pandas Series' values, one per row."""
    return list(column.tolist())


def _plain(value: Any) -> Any:
    """A value as JSON would hold it: numpy arrays and scalars as lists and numbers, pandas' and numpy's missing
    markers (NaN, NA, NaT) as None."""
    if value is None:
        return None
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(value, "tolist"):  # a numpy array or scalar
        return _plain(value.tolist())
    return value


PANDAS_TYPES = {"int64": "Int64", "float64": "Float64", "string": "string"}


def _appended(batch: Any, columns: Columns) -> Any:
    """The batch with the columns after its own, in its format."""
    kind = _kind(batch)
    if kind == "pyarrow":
        import pyarrow as pa

        for name, (column_type, values) in columns.items():
            arrow = pa.type_for_alias(column_type)
            batch = batch.append_column(pa.field(name, arrow), pa.array(values, arrow))
        return batch
    if kind == "pandas":
        import pandas as pd

        added = {name: pd.array(values, dtype=PANDAS_TYPES[t]) for name, (t, values) in columns.items()}
        return batch.assign(**added)
    import numpy as np

    out = dict(batch)
    for name, (column_type, values) in columns.items():
        if column_type == "string" or any(v is None for v in values):
            array = np.empty(len(values), dtype=object)
            array[:] = values
        else:
            array = np.asarray(values, dtype=column_type)
        out[name] = array
    return out


# The engine of `annotate --engine ray` --------------------------------------------------------------------


class _Worker(Scorer):
    """An actor of `annotate --engine ray`: a Scorer made from the command line's settings."""

    def __init__(self, model: ModelRequest, rows: DatasetOptions, windows: WindowSettings, analyses: Analyses) -> None:
        self.failure: Exception | None = None
        try:
            self._build(model, rows, windows, analyses)
        except Exception as exc:  # noqa: BLE001 - raised by the first call, where Ray passes it on whole
            self.failure = exc

    def fingerprint(self) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        return super().fingerprint()


class RayEngine:
    """annotate's `Engine` on Ray actors: a context manager (Ray joined or started, the actors made; at the end
    the actors killed, and Ray shut down if it was started here) that scores chunks as `Engine` does.

    Each of `workers` actors loads the model once. Chunks go to them in turn, at most IN_FLIGHT each at a time,
    carrying only the columns a row's document is made from; their scores come back in the chunks' order.
    The cluster is the one at `address` (None: RAY_ADDRESS, else a local Ray started for the run). `expected`:
    the fingerprint this process computed (RowScorer.fingerprint); workers that would score otherwise (another
    device or dtype) are refused in one line.
    """

    def __init__(
        self,
        model: ModelRequest,
        rows: DatasetOptions,
        windows: WindowSettings,
        analyses: Analyses,
        address: str | None = None,
        workers: int = 1,
        expected: dict[str, Any] | None = None,
    ) -> None:
        if workers < 1:
            raise GptlossError(f"--workers {workers}: give 1 or more")
        self.settings = (model, rows, windows, analyses)
        self.address = address
        self.workers = workers
        self.expected = expected
        self.actors: list[Any] = []
        self.reads = rows.columns
        self.started = False  # whether Ray was started here (and is shut down at the end)
        self.sent = 0

    def __enter__(self) -> RayEngine:
        ray = _ray()
        try:
            self._start(ray)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _start(self, ray: Any) -> None:
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or "local"
            try:
                ray.init(
                    address=address,
                    ignore_reinit_error=True,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                    include_dashboard=False,
                )
            except Exception as exc:  # noqa: BLE001 - Ray's own errors (ConnectionError, ValueError, ...)
                raise GptlossError(f"--engine ray: cannot start or join Ray at {address} ({first_line(exc)})") from exc
            self.started = True
        num_cpus, num_gpus = self._resources(ray)
        actor = ray.remote(_Worker).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0)
        self.actors = [actor.remote(*self.settings) for _ in range(self.workers)]
        prints = self._get([a.fingerprint.remote() for a in self.actors])  # each has loaded the model
        if self.expected is not None:
            for key, ours in self.expected.items():
                theirs = prints[0].get(key)
                if theirs != ours:
                    raise GptlossError(
                        f"--engine ray: the workers score with another {key} ({theirs!r}) than this process "
                        f"({ours!r}); give --device and --dtype that both have"
                    )

    def _resources(self, ray: Any) -> tuple[float, float]:
        """Each actor's CPUs and GPUs: a GPU when the model runs on CUDA (asked for, or `auto` on a cluster
        with GPUs); the free CPUs shared among the actors (one each at most beside a GPU)."""
        model = self.settings[0]
        free = ray.available_resources()
        gpus = int(ray.cluster_resources().get("GPU", 0))
        on_gpu = model.backend is Backend.transformers and (
            model.device is Device.cuda or (model.device is Device.auto and gpus > 0)
        )
        cpus = math.floor(100 * float(free.get("CPU", 0)) / self.workers) / 100
        if not on_gpu:
            return cpus, 0
        free_gpus = int(free.get("GPU", 0))
        if free_gpus < self.workers:
            raise GptlossError(
                f"--workers {self.workers}: each loads the model on a GPU, and the Ray cluster has {free_gpus} free"
            )
        return min(cpus, 1.0), 1

    def __call__(self, chunks: Iterator[Chunk], progress: Callable[[int], None]) -> Iterator[tuple[Chunk, ScoredRows]]:
        if not self.actors:
            raise GptlossError("the Ray engine is used inside its with-block")
        pending: deque[tuple[Chunk, Any]] = deque()
        for chunk in chunks:
            actor = self.actors[self.sent % len(self.actors)]
            self.sent += 1
            pending.append((chunk, actor.score_records.remote(chunk.records(self.reads), chunk.where)))
            if len(pending) >= IN_FLIGHT * len(self.actors):
                yield self._finish(*pending.popleft(), progress)
        while pending:
            yield self._finish(*pending.popleft(), progress)

    def _finish(self, chunk: Chunk, ref: Any, progress: Callable[[int], None]) -> tuple[Chunk, ScoredRows]:
        scored: ScoredRows = self._get(ref)
        progress(scored.total.tokens_scored)
        return chunk, scored

    def _get(self, refs: Any) -> Any:
        """ray.get, with a failed or lost actor as one line."""
        ray = _ray()
        try:
            return ray.get(refs)
        except ray.exceptions.RayError as exc:
            raise GptlossError(_failure(exc)) from None

    def close(self) -> None:
        """Kill the actors; shut Ray down if it was started here."""
        ray = sys.modules.get("ray")
        if ray is None:
            return
        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if self.started:
            ray.shutdown()
            self.started = False


def _failure(exc: BaseException) -> str:
    """One line for a Ray error: the worker's own error where there is one."""
    cause = getattr(exc, "cause", None)
    while cause is not None and getattr(cause, "cause", None) is not None:  # a task's error wrapped in another's
        cause = cause.cause
    if isinstance(cause, GptlossError):
        return f"a Ray worker: {cause.message}"
    if isinstance(cause, BaseException):
        return f"a Ray worker failed: {type(cause).__name__}: {first_line(cause)}"
    return f"a Ray worker failed: {re.sub(ANSI, '', first_line(exc))}"
