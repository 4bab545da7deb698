"""The preamble every scoring command shares: join the launcher's ranks, read the input, load the models,
make the documents."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..core.distributed import World
from ..core.windows import BosPolicy
from ..errors import GptlossError
from ..files import Outputs
from ..inputs.document import Document
from ..inputs.read import ReadSettings, read_inputs
from ..models.loader import resolve_device
from ..models.spec import LoadedModel, ModelRequest
from ..tasks.documents import documents_for
from . import console
from .console import load, warn


def join(world: World, request: ModelRequest) -> World:
    """The ranks this process works with: under torchrun or accelerate launch, the process group on the
    device the model asks for; alone, SOLO."""
    return world.join(cuda=resolve_device(request.device).startswith("cuda"))


def prepare(
    read_settings: ReadSettings, requests: Sequence[ModelRequest], bos: BosPolicy, outputs: Outputs
) -> tuple[list[LoadedModel], list[Document], World]:
    """The input read first and the outputs claimed (bad input, an output that would overwrite an input or
    cannot be written fail before a model loads), then the models, then the documents (chats rendered with the
    first model's template). With several ranks, each rank's failure stops all of them, only the first writes
    (and claims the outputs), and on each machine the first rank loads first (a GGUF file is converted once,
    then read from the cache by the others)."""
    launched = console.world()
    if any(r.device_map for r in requests) and launched.local_size > 1:
        raise GptlossError(
            "--device-map auto spreads one model over this machine's GPUs: run one rank per machine "
            "(--nproc-per-node 1)"
        )
    world = join(launched, requests[0])
    error: Exception | None = None
    try:
        found = read_inputs(read_settings)
        if world.leader:
            outputs.take([*found.read, *(f for r in requests for f in model_files(r.spec))])
        for message in found.warnings:
            warn(message)
        loaded = [load(request) for request in requests] if world.local_rank == 0 else []
    except Exception as exc:  # noqa: BLE001 - every rank must hear of it
        error = exc
    world.agree(error)
    try:
        loaded = loaded or [load(request) for request in requests]
        documents, warnings = documents_for(found.items, loaded[0], read_settings.dataset, bos)
    except Exception as exc:  # noqa: BLE001
        error = exc
    world.agree(error)
    for message in warnings:
        warn(message)
    return loaded, documents, world


def model_files(spec: str) -> list[str]:
    """The files of a model given by path (a file, or a model folder's files), which no output may overwrite."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return [str(p) for p in sorted(path.iterdir()) if p.is_file()]
    return [str(path)] if path.is_file() else []


def warn_all(messages: Sequence[str]) -> None:
    for message in messages:
        warn(message)
