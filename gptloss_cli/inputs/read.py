"""Files or a dataset, read before the model loads so that bad input fails fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .dataset import ChatRecord, DatasetOptions, dataset_files, read_dataset
from .document import Document
from .files import TEXT, FileSettings, list_files, read_document


@dataclass(frozen=True)
class ReadSettings:
    """What to read: files and folders (- is standard input) or a dataset, and how bytes are decoded."""

    paths: tuple[str, ...] = ()
    files: FileSettings = TEXT
    dataset: DatasetOptions | None = None

    def describe(self, documents: list[Document]) -> dict[str, Any]:
        """The `input` block of a result: the files, or the dataset and its columns."""
        if self.dataset is None:
            return {"files": [d.source for d in documents]}
        return self.dataset.describe()


@dataclass(frozen=True)
class Items:
    """What was read: documents, or chats still to render; a warning for each thing skipped; and the files
    read (standard input as -), which no output may overwrite."""

    items: list[Document | ChatRecord]
    warnings: list[str] = field(default_factory=list)
    read: list[str] = field(default_factory=list)


def read_inputs(settings: ReadSettings) -> Items:
    """The files, or the records of the dataset; one clear error for neither or both."""
    if settings.dataset is None:
        listing = list_files(list(settings.paths), settings.files)
        documents: list[Document | ChatRecord] = [read_document(p, settings.files) for p in listing.files]
        return Items(documents, listing.warnings(), listing.files)
    if settings.paths:
        raise UsageError("give files or --dataset, not both")
    found = read_dataset(settings.dataset, files=settings.files)
    warnings = [f"skipped {found.skipped} bad record(s); the first: {found.first_problem}"] if found.skipped else []
    template = [] if settings.dataset.chat_template is None else [str(settings.dataset.chat_template)]
    return Items(found.items, warnings, [*dataset_files(Path(settings.dataset.name).expanduser()), *template])
