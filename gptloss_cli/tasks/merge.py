"""`merge`: the run files of one job's shards (`score --shard I/N -o FILE.jsonl`) joined into the run file one
process would have written: the same header (less the shard), every document's line in input order, and the
total, combined from the per-document sums (Σnll, Σnll², tokens, bytes, words) each line keeps."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.presets import preset
from ..core.totals import Bootstrap
from ..errors import GptlossError
from .accumulator import Accumulator, CorpusTotal, DocumentScore
from .runfile import (
    MODEL_KEYS,
    PLAN_KEYS,
    RUN_SCHEMA,
    document_line,
    document_score,
    parse_record,
    plan_value,
    same_input,
)
from .score import SCORE_SCHEMA


@dataclass(frozen=True)
class RunFile:
    """One shard's run file, read whole."""

    path: Path
    header: dict[str, Any]
    documents: list[DocumentScore]
    total: dict[str, Any]

    @property
    def shard(self) -> tuple[int, int]:
        shard = self.header.get("shard")
        return (0, 1) if not isinstance(shard, dict) else (int(shard["index"]), int(shard["count"]))


def read_run_file(path: Path) -> RunFile:
    """A finished run file (header, document lines, total line), or one line saying what is wrong with it."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GptlossError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise GptlossError(f"{path}: not a gptloss score run (not UTF-8 text)") from exc
    records = [(number, parse_record(path, number, text)) for number, text in enumerate(raw.splitlines(), start=1)]
    head = records[0][1] if records else {}
    shard = head.get("shard", {"index": 0, "count": 1})
    whole = isinstance(head.get("model"), dict) and isinstance(head.get("settings"), dict)
    whole = whole and isinstance(shard, dict) and all(type(shard.get(k)) is int for k in ("index", "count"))
    if head.get("schema") != RUN_SCHEMA or not whole:
        raise GptlossError(f"{path}: not a gptloss score run (score -o FILE.jsonl writes one)")
    if not isinstance(records[-1][1].get("total"), dict):
        raise GptlossError(f"{path} is not finished (no total line): carry it on with score --resume, then merge")
    documents = []
    for number, record in records[1:-1]:
        try:
            documents.append(document_score(record))
        except (KeyError, TypeError, ValueError) as exc:
            raise GptlossError(f"{path} line {number}: not a run record") from exc
    return RunFile(path, records[0][1], documents, records[-1][1]["total"])


def _difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """What makes two headers belong to different jobs, or None."""
    for key in MODEL_KEYS:
        if a["model"].get(key) != b["model"].get(key):
            return f"model {key}"
    for key in PLAN_KEYS:
        if plan_value(a["settings"], key) != plan_value(b["settings"], key):
            return key
    if not same_input(a.get("input"), b.get("input")):
        return "input (documents or dataset options)"
    return None


@dataclass(frozen=True)
class Merged:
    header: dict[str, Any]
    documents: list[DocumentScore]
    total: CorpusTotal

    def run_lines(self) -> list[dict[str, Any]]:
        """The run file: header, a line per document in input order, the total."""
        return [self.header, *(document_line(d) for d in self.documents), {"total": self.total.to_dict()}]

    def to_dict(self) -> dict[str, Any]:
        """As `score -f json` writes it."""
        head = {k: v for k, v in self.header.items() if k in ("model", "settings")}
        described = self.header.get("input")
        if isinstance(described, dict) and "files" not in described:  # score's JSON names datasets, not files
            head["input"] = described
        documents = [d.to_dict() for d in self.documents]
        return {"schema": SCORE_SCHEMA, **head, "documents": documents, "total": self.total.to_dict()}


def merge_runs(paths: Sequence[Path]) -> Merged:
    """The shards' run files as one run (see the module docstring); refused in one line when they are not
    the whole of one job: other settings, a shard missing or given twice, a file not finished."""
    files = [read_run_file(p) for p in paths]
    first = files[0]
    for other in files[1:]:
        differs = _difference(first.header, other.header)
        if differs is not None:
            raise GptlossError(f"{first.path} and {other.path} are not shards of one job: their {differs} differs")
    counts = {f.shard[1] for f in files}
    if len(counts) > 1:
        raise GptlossError(
            "the files split the job in different numbers of shards: "
            + ", ".join(f"{f.path} is {f.shard[0]}/{f.shard[1]}" for f in files)
        )
    count = counts.pop()
    boots = {json.dumps(f.total.get("bootstrap")) for f in files}
    if len(boots) > 1:
        raise GptlossError("the shards were scored with different --bootstrap/--seed settings: score them alike")
    seen: dict[int, Path] = {}
    for f in files:
        if f.shard[0] in seen:
            raise GptlossError(f"shard {f.shard[0]}/{count} is given twice: {seen[f.shard[0]]} and {f.path}")
        seen[f.shard[0]] = f.path
    missing = [f"{i}/{count}" for i in range(count) if i not in seen]
    if missing:
        raise GptlossError(f"shard {', '.join(missing)} missing (of {count}): score it with --shard, then merge all")
    seen_documents: dict[int, Path] = {}
    for f in files:
        for d in f.documents:
            if d.index in seen_documents:
                raise GptlossError(f"{f.path}: document {d.index} ({d.source}) is in another shard too")
            seen_documents[d.index] = f.path
    total = functools.reduce(Accumulator.merge, [_accumulated(f) for f in files])
    header = {k: v for k, v in first.header.items() if k != "shard"}
    boot = first.total.get("bootstrap")
    bootstrap = None if not isinstance(boot, dict) else Bootstrap(int(boot["resamples"]), int(boot["seed"]))
    return Merged(header, total.documents(), total.compute(bootstrap))


def _accumulated(file: RunFile) -> Accumulator:
    """One shard's Accumulator: its documents, and the peer counts its total line keeps."""
    settings = file.header["settings"]
    name = plan_value(settings, "protocol")
    try:
        chosen = preset(name)
    except GptlossError as exc:
        raise GptlossError(f"{file.path}: scored with the {name} protocol, which this gptloss does not have") from exc
    width = (settings.get("analyses") or {}).get("by_position")
    total = Accumulator(chosen, None if width is None else int(width), file.documents)
    try:
        total.add_counts(chosen.counts_from_total(file.total))
    except (KeyError, TypeError, ValueError) as exc:
        raise GptlossError(f"{file.path}: its total line has no {chosen.name} figures") from exc
    return total
