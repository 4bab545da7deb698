"""`score -f jsonl`: one line per finished document, written as it goes, and resumable.

    {"schema": "gptloss.score-run/v1", "model": ..., "settings": ..., "input": ...}   the header
    {"index": 7, "source": "data.jsonl:8", "tokens_scored": ..., "nll_sum": ..., ...}   one per document
    {"total": {...}}                                                                  only once all are done

Each line goes to the file in one write as soon as its document is done, so a run that is
stopped (Ctrl-C, a killed job, a full disk) leaves whole lines only. --resume reads them back,
checks that they were made with the same model, settings and input, skips those documents and
appends the rest; the totals are the same as an uninterrupted run's (see Scorer.documents).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from ..core.presets import DEFAULT, PeerCounts
from ..core.totals import Bootstrap, Totals
from ..errors import GptlossError
from ..files import LineFile
from ..inputs.document import Document
from .accumulator import DocumentScore
from .analyses import DocumentAnalyses
from .job import Tracker
from .score import ScoreResult, ScoreRun

RUN_SCHEMA = "gptloss.score-run/v1"
# What must match for a resumed run to give the same numbers as an uninterrupted one.
MODEL_KEYS = ("spec", "sha256", "revision", "dtype", "device")
PLAN_KEYS = ("protocol", "max_length", "stride", "bos_policy", "bos_token_id", "batch_size", "analyses")


def line(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n"


def header(run: ScoreRun, described: dict[str, Any] | None) -> dict[str, Any]:
    """The first line: what made the run (a shard's also says which share it holds)."""
    head = {
        "schema": RUN_SCHEMA,
        "model": run.loaded.info.to_dict(),
        "settings": run.settings_dict(),
        "input": described,
    }
    return head if run.shard is None else {**head, "shard": run.shard.to_dict()}


def document_line(score: DocumentScore) -> dict[str, Any]:
    """A document's line; of its peer counts, those that need its losses (a recipe's sums): the
    others follow from its text and windows, or add up in the total line (see Accumulator)."""
    recipe = score.counts.recipe
    return {"index": score.index, **score.to_dict(), **({} if recipe is None else {"recipe_sums": list(recipe)})}


def document_score(record: dict[str, Any]) -> DocumentScore:
    """A document line read back (KeyError, TypeError or ValueError when it is not one)."""
    sums = record.get("recipe_sums")
    counts = PeerCounts(recipe=None if sums is None else (float(sums[0]), int(sums[1])))
    found = DocumentAnalyses.from_dict(record)
    return DocumentScore(str(record["source"]), Totals.from_dict(record), None, int(record["index"]), counts, found)


def read_run(path: Path, expected: dict[str, Any], documents: list[Document]) -> list[DocumentScore]:
    """The documents a run file already holds, after checking it belongs to this run.

    A last line cut short is removed, and so is the total line (it is written again at the end).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise GptlossError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    keep = data.rfind(b"\n") + 1  # a line without its newline was cut short
    records, offset = [], 0
    for number, raw in enumerate(data[:keep].splitlines(keepends=True), start=1):
        record = parse_record(path, number, raw, "; start over without --resume")
        if "total" in record:
            keep = offset
            break
        records.append((number, record))
        offset += len(raw)
    if not records:
        _truncate(path, 0)
        return []
    _check_header(path, records[0][1], expected)
    done: dict[int, DocumentScore] = {}
    for number, record in records[1:]:
        index = _index(path, number, record, documents)
        try:  # named as this run names it: the digest says it is the same document
            done[index] = replace(document_score(record), source=documents[index].source)
        except (KeyError, TypeError, ValueError) as exc:
            raise GptlossError(f"{path} line {number}: not a run record; start over without --resume") from exc
    _truncate(path, keep)
    return list(done.values())


def parse_record(path: Path, number: int, raw: str | bytes, hint: str = "") -> dict[str, Any]:
    """Line `number` of a run file as a JSON object, or one line saying it is not a run record (+ `hint`)."""
    try:
        record = json.loads(raw)
    except ValueError as exc:
        raise GptlossError(f"{path} line {number}: not a run record ({exc}){hint}") from exc
    if not isinstance(record, dict):
        raise GptlossError(f"{path} line {number}: not a run record{hint}")
    return record


def _check_header(path: Path, found: dict[str, Any], expected: dict[str, Any]) -> None:
    again = "start over without --resume or pick another --output"
    model, settings = found.get("model"), found.get("settings")
    if found.get("schema") != RUN_SCHEMA or not isinstance(model, dict) or not isinstance(settings, dict):
        raise GptlossError(f"{path}: not a gptloss score run; {again}")
    pairs = [(f"model {k}", model.get(k), expected["model"].get(k)) for k in MODEL_KEYS]
    pairs += [(k, plan_value(settings, k), plan_value(expected["settings"], k)) for k in PLAN_KEYS]
    for name, was, now in pairs:
        if was != now:
            raise GptlossError(f"{path} was written with another {name} ({was!r}, now {now!r}); {again}")
    if not same_input(found.get("input"), expected.get("input")):
        raise GptlossError(f"{path} was written from other documents or dataset options; {again}")
    if found.get("shard") != expected.get("shard"):
        was, now = (_shard_name(x.get("shard")) for x in (found, expected))
        raise GptlossError(f"{path} holds {was}, this run {now}; {again}")


# Where the input was read from, as it was spelled: the same data named another way is the same input.
SPELLED = ("files", "dataset", "chat_template")


def same_input(a: Any, b: Any) -> bool:
    """Whether two `input` blocks describe the same documents: the same content digest and dataset options,
    whatever the paths were called (the documents' names and the dataset's spelling aside)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return a == b
    return {k: v for k, v in a.items() if k not in SPELLED} == {k: v for k, v in b.items() if k not in SPELLED}


def _shard_name(shard: Any) -> str:
    return "every document" if not isinstance(shard, dict) else f"shard {shard.get('index')}/{shard.get('count')}"


def plan_value(settings: dict[str, Any], key: str) -> Any:
    """A setting a resumed run must share; of the protocol card, its name (files without one: gptloss)."""
    if key == "protocol":
        card = settings.get("protocol")
        return card.get("name") if isinstance(card, dict) else DEFAULT
    return settings.get(key)


def _index(path: Path, number: int, record: dict[str, Any], documents: list[Document]) -> int:
    index = record.get("index")
    if not isinstance(index, int) or not 0 <= index < len(documents):
        raise GptlossError(f"{path} line {number}: a document this input does not have; start over without --resume")
    return index


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as handle:
        handle.truncate(size)


def run_jsonl(
    run: ScoreRun,
    output: Path | IO[str],
    resume: bool,
    described: dict[str, Any],
    bootstrap: Bootstrap | None,
    tracker: Tracker,
) -> ScoreResult:
    """Score `run`, writing the run file (or a stream) as documents finish; with `resume`, carry on the
    run in the file `output`. With several ranks, rank 0 reads and writes the file, and tells the others
    which documents it already holds."""
    head = header(run, described)
    world = run.world
    done: list[DocumentScore] = []
    fresh = True
    sink: LineFile | IO[str] | _Nowhere = _Nowhere()
    error = None
    if world.leader:
        try:
            if isinstance(output, Path):
                done = read_run(output, head, run.documents) if resume else []
                fresh = not done and not (resume and output.exists() and output.stat().st_size)
                sink = LineFile(output, append=not fresh)
            else:
                sink = output
        except GptlossError as exc:
            error = exc
    world.agree(error, named=False)
    if world.parallel:  # every rank's result holds the documents already done
        done = [document_score(x) for x in world.broadcast([document_line(d) for d in done])]
    skip = frozenset(d.index for d in done)
    total = run.accumulator([run.restored(d) for d in done])
    try:
        if fresh:
            _write(sink, head)
        tracker.start(run.tokens_to_score(skip), run.documents_to_score(skip))
        for score in run.scores(tracker.advance, skip=skip, keep_losses=False):
            tracker.document()
            _write(sink, document_line(score))
            total.update(score)
        result = run.result(total, bootstrap, described)
        _write(sink, {"total": result.total_dict()})
    finally:
        if isinstance(sink, LineFile):
            sink.close()
    return result


def _write(sink: LineFile | IO[str] | _Nowhere, data: dict[str, Any]) -> None:
    sink.write(line(data))
    sink.flush()


class _Nowhere:
    """Where ranks other than 0 write their run file."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass
