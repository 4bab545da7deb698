"""The preamble every scoring command shares: join the launcher's ranks, read the input, load the models,
make the documents."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..core.distributed import World, world_from_environment
from ..core.windows import BosPolicy
from ..errors import GptlossError
from ..inputs.document import Document
from ..inputs.read import InputSettings, read_inputs
from ..models.loader import resolve_device
from ..models.spec import LoadedModel, ModelRequest
from ..tasks.documents import documents_for
from .console import load, warn


def join(request: ModelRequest) -> World:
    """The ranks this process works with: under torchrun or accelerate launch, the process group on the
    device the model asks for; alone, SOLO."""
    return world_from_environment(cuda=resolve_device(request.device).startswith("cuda"))


def prepare(
    inputs: InputSettings, requests: Sequence[ModelRequest], bos: BosPolicy
) -> tuple[list[LoadedModel], list[Document], World]:
    """The input read first (bad input fails before a model loads), then the models, then the documents
    (chats rendered with the first model's template). With several ranks, each rank's failure stops all of
    them, and on each machine the first rank loads first (a GGUF file is converted once, then read from the
    cache by the others)."""
    if any(r.device_map for r in requests) and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        raise GptlossError(
            "--device-map auto spreads one model over this machine's GPUs: run one rank per machine "
            "(--nproc-per-node 1)"
        )
    world = join(requests[0])
    error: Exception | None = None
    try:
        found = read_inputs(inputs)
        for message in found.warnings:
            warn(message)
        loaded = [load(request) for request in requests] if world.local_rank == 0 else []
    except Exception as exc:  # noqa: BLE001 - every rank must hear of it
        error = exc
    world.agree(error)
    try:
        loaded = loaded or [load(request) for request in requests]
        documents, warnings = documents_for(found.items, loaded[0], inputs.dataset, bos)
    except Exception as exc:  # noqa: BLE001
        error = exc
    world.agree(error)
    for message in warnings:
        warn(message)
    return loaded, documents, world


def warn_all(messages: Sequence[str]) -> None:
    for message in messages:
        warn(message)
