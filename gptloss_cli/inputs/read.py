"""Files or a dataset, read before the model loads so that bad input fails fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import GptlossError
from .dataset import ChatRecord, DatasetOptions, read_dataset
from .document import Document
from .files import DecodeErrors, read_documents


@dataclass(frozen=True)
class InputSettings:
    """What to read: files (- is standard input) or a dataset, and how bytes are decoded."""

    paths: tuple[str, ...] = ()
    encoding: str = "utf-8"
    errors: DecodeErrors = DecodeErrors.strict
    dataset: DatasetOptions | None = None

    def describe(self, documents: list[Document]) -> dict[str, Any]:
        """The `input` block of a result: the files, or the dataset and its columns."""
        if self.dataset is None:
            return {"files": [d.source for d in documents]}
        return self.dataset.describe()


@dataclass(frozen=True)
class Items:
    """What was read: documents, or chats still to render; and a warning for each thing skipped."""

    items: list[Document | ChatRecord]
    warnings: list[str] = field(default_factory=list)


def read_inputs(settings: InputSettings) -> Items:
    """The files, or the records of the dataset; one clear error for neither or both."""
    if settings.dataset is None:
        return Items(list(read_documents(list(settings.paths), settings.encoding, settings.errors)))
    if settings.paths:
        raise GptlossError("give files or --dataset, not both")
    found = read_dataset(settings.dataset, settings.encoding, settings.errors.value)
    warnings = [f"skipped {found.skipped} bad record(s); the first: {found.first_problem}"] if found.skipped else []
    return Items(found.items, warnings)
