"""Documents from a dataset: a local JSONL, JSON, CSV, Parquet or text file, a folder, or a hub dataset.

JSON Lines files are read here, line by line, so a malformed line is reported by its number
(or skipped with --skip-bad-records) and --limit stops reading early; every other format goes
through the `datasets` builders. Each record becomes one document, whose loss mask comes from
the columns the user names (see DatasetOptions).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import GptlossError, UsageError, first_line
from ..models.hub import hub_reachable
from .document import Document
from .fields import BadRecord, check_unicode, parse_label, parse_messages, parse_spans
from .files import TEXT, FileSettings

JSONL_SUFFIXES = (".jsonl", ".ndjson")
BUILDERS = {".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".txt": "text", ".arrow": "arrow"}
SKIP_HINT = "fix it or pass --skip-bad-records"


@dataclass(frozen=True)
class DatasetOptions:
    """Which records to read and which of their characters to score.

    text: score all of `text_column` (or only its `span_column` character spans);
    prompt/completion: score the completion given the prompt (text = prompt + completion);
    messages: render the chat with the model's template and score the turns of `score_roles`.
    """

    name: str
    config: str | None = None
    split: str | None = None
    text_column: str | None = None
    prompt_column: str | None = None
    completion_column: str | None = None
    messages_column: str | None = None
    span_column: str | None = None
    label_column: str | None = None
    score_roles: tuple[str, ...] | None = None
    limit: int | None = None
    streaming: bool = False
    skip_bad_records: bool = False
    chat_template: Path | None = None

    @property
    def mode(self) -> str:
        if self.messages_column:
            return "messages"
        return "prompt" if self.prompt_column or self.completion_column else "text"

    @property
    def columns(self) -> list[str]:
        label = [self.label_column] if self.label_column else []
        if self.mode == "messages":
            return [str(self.messages_column), *label]
        if self.mode == "prompt":
            return [str(self.prompt_column), str(self.completion_column), *label]
        return [self.text_column or "text", *([self.span_column] if self.span_column else []), *label]

    def check(self) -> None:
        """One clear line for options that do not go together."""
        if bool(self.prompt_column) != bool(self.completion_column):
            raise UsageError("--prompt-column and --completion-column go together")
        if self.messages_column and (self.prompt_column or self.text_column):
            raise UsageError("--messages-column cannot be combined with --text-column or --prompt-column")
        if self.prompt_column and self.text_column:
            raise UsageError("--text-column cannot be combined with --prompt-column/--completion-column")
        if self.span_column and self.mode != "text":
            raise UsageError("--span-column applies to --text-column only")
        if self.score_roles is not None and self.mode != "messages":
            raise UsageError("--score-roles applies to --messages-column only")

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "config": self.config,
            "split": self.split,
            "mode": self.mode,
            "columns": self.columns,
            "score_roles": list(self.roles) if self.mode == "messages" else None,
            "limit": self.limit,
            "skip_bad_records": self.skip_bad_records,
            "chat_template": None if self.chat_template is None else str(self.chat_template),
        }

    @property
    def roles(self) -> tuple[str, ...]:
        return self.score_roles or ("assistant",)


@dataclass(frozen=True)
class ChatRecord:
    """A conversation waiting for the model's chat template."""

    messages: list[dict[str, str]]
    source: str
    label: int | None = None


@dataclass(frozen=True)
class DatasetInput:
    """The records read, and the bad ones skipped (--skip-bad-records): how many, and the first one's problem."""

    items: list[Document | ChatRecord]
    skipped: int = 0
    first_problem: str | None = None


def read_dataset(options: DatasetOptions, *, files: FileSettings = TEXT) -> DatasetInput:
    """Read and check the records of a dataset (the chats are rendered later, with the model's template).

    A local file or folder is read without the network, and so is a hub dataset when the hub cannot be reached
    (from the cache, if it is there).

    Args:
        options: Which records, and which of their characters to score.
        files: How bytes are decoded, and the longest record (a JSONL line) read.
    """
    options.check()
    if options.limit is not None and options.limit < 1:
        raise UsageError("--limit must be at least 1")
    path = Path(options.name).expanduser()
    encoding, errors = files.encoding, files.errors.value
    if path.is_file() and path.suffix.lower() in JSONL_SUFFIXES:
        if options.split not in (None, "train"):
            raise GptlossError(f"{path.name}: a single file has one split, train; --split {options.split} is not one")
        rows = _jsonl_rows(path, encoding, errors, files.max_bytes)
    else:
        rows = _dataset_rows(options, path, encoding, errors)
    items: list[Document | ChatRecord] = []
    skipped, first_problem = 0, None
    wanted = options.columns
    first, unknown = True, ""
    for where, row in rows:
        if options.limit is not None and len(items) >= options.limit:
            break
        try:
            if isinstance(row, BadRecord):
                raise row
            missing = [c for c in wanted if c not in row]
            if first and missing:
                available = ", ".join(map(str, row)) or "none"
                unknown = f"{options.name}: no column {missing[0]!r}; available columns: {available}"
                if not options.skip_bad_records:
                    raise GptlossError(unknown)
            first = first and bool(missing)  # the columns are checked until a record has them all
            item = record_item(row, where, options)
            if options.label_column:
                item = replace(item, label=parse_label(row.get(options.label_column), options.label_column, where))
            items.append(item)
        except BadRecord as bad:
            if not options.skip_bad_records:
                raise GptlossError(f"{bad}; {SKIP_HINT}") from None
            skipped += 1
            first_problem = first_problem or str(bad)
    if not items:
        raise GptlossError(unknown if unknown else f"{options.name}: no records to score")
    return DatasetInput(items, skipped, first_problem)


def record_item(row: dict[str, Any], where: str, options: DatasetOptions) -> Document | ChatRecord:
    """The document (or chat to render) of one record, as `options` reads it; BadRecord saying why not."""

    def column(name: str, kind: type) -> Any:
        if name not in row:
            raise BadRecord(f"{where}: no column {name!r}")
        value = row[name]
        if value is None:
            raise BadRecord(f"{where}: column {name!r} is null")
        if not isinstance(value, kind):
            raise BadRecord(f"{where}: column {name!r} is {type(value).__name__}, not {kind.__name__}")
        if isinstance(value, str):
            check_unicode(value, f"{where}: column {name!r}")
        return value

    if options.mode == "messages":
        return ChatRecord(parse_messages(column(str(options.messages_column), list), where), where)
    if options.mode == "prompt":
        prompt, completion = column(str(options.prompt_column), str), column(str(options.completion_column), str)
        return Document(prompt + completion, where, ((len(prompt), len(prompt) + len(completion)),))
    text = column(options.text_column or "text", str)
    if not options.span_column:
        return Document(text, where)
    return Document(text, where, parse_spans(column(options.span_column, list), len(text), where))


def dataset_files(path: Path) -> list[str]:
    """The local files a dataset is read from: the file, or every file in the folder (none for a hub id)."""
    if path.is_dir():
        return sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    return [str(path)] if path.exists() else []


def _jsonl_rows(
    path: Path, encoding: str, errors: str, max_bytes: int
) -> Iterator[tuple[str, dict[str, Any] | BadRecord]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise GptlossError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    with handle:
        for number, raw in enumerate(iter(lambda: handle.readline(max_bytes + 1), b""), start=1):
            where = f"{path.name}:{number}"
            if len(raw) > max_bytes:  # a line is read no further than the limit: memory stays bounded
                raise GptlossError(f"{path.name} line {number}: longer than --max-bytes {max_bytes:,} bytes")
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode(encoding, errors).rstrip("\r\n"))
            except UnicodeDecodeError as exc:
                yield where, BadRecord(f"{path.name} line {number}: not valid {exc.encoding} at byte {exc.start}")
                continue
            except json.JSONDecodeError as exc:
                yield where, BadRecord(f"{path.name} line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(row, dict):
                yield where, BadRecord(f"{path.name} line {number}: not a JSON object")
                continue
            yield where, row


def _dataset_rows(
    options: DatasetOptions, path: Path, encoding: str, errors: str
) -> Iterator[tuple[str, dict[str, Any] | BadRecord]]:
    local = path.exists()
    if not local and (path.suffix.lower() in (*BUILDERS, *JSONL_SUFFIXES) or options.name.startswith((".", "/", "~"))):
        raise GptlossError(f"{options.name}: no such file or folder")
    if path.is_file() and path.suffix.lower() not in BUILDERS:
        known = ", ".join(sorted({*BUILDERS, *JSONL_SUFFIXES}))
        raise GptlossError(f"{path.name}: unknown dataset file type (known: {known})")
    online = local or hub_reachable()
    datasets = _import_datasets(offline=not online)
    if path.is_file():
        builder = BUILDERS[path.suffix.lower()]
        args: dict[str, Any] = {"path": builder, "data_files": str(path)}
        if builder in ("csv", "json", "text"):
            args.update(encoding=encoding, encoding_errors=errors)
        if path.suffix.lower() == ".tsv":
            args["sep"] = "\t"
        label = path.name
    else:
        args = {"path": str(path) if local else options.name, "name": options.config}
        label = path.name if local else options.name
    try:
        loaded = datasets.load_dataset(**args, split=options.split, streaming=options.streaming)
        if options.split is None:
            if len(loaded) != 1:
                raise GptlossError(f"{label} has splits {', '.join(loaded)}; choose one with --split")
            loaded = next(iter(loaded.values()))
        names = getattr(loaded, "column_names", None)
        if names and all(c in names for c in options.columns):
            loaded = loaded.select_columns(options.columns)
    except GptlossError:
        raise
    except ConnectionError as exc:
        raise GptlossError(
            f"dataset {options.name}: the Hugging Face hub cannot be reached and no copy is cached; "
            "give a local file or folder"
        ) from exc
    except Exception as exc:  # datasets raises many types (FileNotFoundError, ValueError, DatasetNotFoundError...)
        first = first_line(exc, root=True)
        if not online:
            first += " (the Hugging Face hub cannot be reached: only cached datasets load)"
        raise GptlossError(f"dataset {options.name}: {first}") from exc
    rows, i = iter(loaded), 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # a parse error found while reading on
            raise GptlossError(f"dataset {options.name}: after record {i}: {first_line(exc, root=True)}") from exc
        yield f"{label}[{i}]", row
        i += 1


def _import_datasets(offline: bool) -> Any:
    """The `datasets` module, quiet, and with `offline` kept from the network: both libraries read their offline
    switch from these constants when they would go online (the environment only when they are first imported)."""
    import datasets
    import huggingface_hub.constants

    if offline:
        huggingface_hub.constants.HF_HUB_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = True
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its errors reach the user as GptlossError
    return datasets
