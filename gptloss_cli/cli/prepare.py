"""The preamble every scoring command shares: read the input, load the models, make the documents."""

from __future__ import annotations

from collections.abc import Sequence

from ..core.windows import BosPolicy
from ..inputs.document import Document
from ..inputs.read import InputSettings, read_inputs
from ..models.spec import LoadedModel, ModelRequest
from ..tasks.documents import documents_for
from .console import load, warn


def prepare(
    inputs: InputSettings, requests: Sequence[ModelRequest], bos: BosPolicy
) -> tuple[list[LoadedModel], list[Document]]:
    """The input read first (bad input fails before a model loads), then the models, then the documents
    (chats rendered with the first model's template)."""
    found = read_inputs(inputs)
    for message in found.warnings:
        warn(message)
    loaded = [load(request) for request in requests]
    documents, warnings = documents_for(found.items, loaded[0], inputs.dataset, bos)
    for message in warnings:
        warn(message)
    return loaded, documents


def warn_all(messages: Sequence[str]) -> None:
    for message in messages:
        warn(message)
