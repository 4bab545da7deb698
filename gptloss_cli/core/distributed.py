"""Data parallel on torch.distributed: which windows each rank scores, and how the ranks' results meet.

Every rank plans the same windows. `share` gives each a deterministic, token-balanced part of them (a long
document's windows are spread over the ranks like everyone else's); each rank batches its part and scores it
on its own device, and after every batch the ranks exchange what they scored (`exchange`), so every rank ends
with the whole job's per-token values, as one process would have them, and rank 0 writes the output.

The transport is torch.distributed's own all_gather (gloo for these host buffers; NCCL stays for CUDA
tensors when the launcher's job uses it). What travels is bytes: a JSON header and raw numpy buffers, so
nothing is unpickled. A rank that fails says so in its next exchange, and every rank stops with its message.
(torch is imported where it is used: the command line asks `World.launched` who leads before it needs torch.)
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GptlossError, UsageError


class RankFailed(GptlossError):
    """A rank failed and every rank knows: rank 0 says so, the others stay quiet."""


@dataclass(frozen=True)
class World:
    """This process's place in the job: `size` ranks in all (1: no process group), `local_size` of them on
    this machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @classmethod
    def launched(cls, environ: Mapping[str, str]) -> World:
        """This process's place as a launcher wrote it in `environ` (torchrun and accelerate launch set
        WORLD_SIZE, RANK, LOCAL_RANK and LOCAL_WORLD_SIZE); SOLO without one, or when they are not numbers.
        No process group is started: `join` does that, once the command knows its device."""
        try:
            size, local_size = int(environ.get("WORLD_SIZE", "1")), int(environ.get("LOCAL_WORLD_SIZE", "1"))
            if size <= 1:
                return SOLO if local_size == 1 else cls(local_size=local_size)
            return cls(int(environ.get("RANK", "0")), size, int(environ.get("LOCAL_RANK", "0")), local_size)
        except ValueError:
            return SOLO

    def join(self, cuda: bool) -> World:
        """This world with its process group started: gloo for host buffers, and NCCL for CUDA tensors when
        `cuda` (this rank then works on its own GPU). Alone: nothing to start."""
        if not self.parallel:
            return self
        import torch
        import torch.distributed as dist

        if cuda:  # one GPU per local rank (several ranks share them round-robin when there are fewer)
            torch.cuda.set_device(self.local_rank % torch.cuda.device_count())
        if not dist.is_initialized():
            dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
        return self

    @property
    def parallel(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        """Rank 0: the one that prints and writes."""
        return self.rank == 0

    def exchange(self, payload: bytes) -> list[bytes]:
        """Every rank's `payload`, in rank order, on every rank."""
        if not self.parallel:
            return [payload]
        import torch
        import torch.distributed as dist

        sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(self.size)]
        try:
            dist.all_gather(sizes, torch.tensor([len(payload)], dtype=torch.int64))
            width = max(int(s.item()) for s in sizes)
            padded = torch.zeros(width, dtype=torch.uint8)
            if payload:
                padded[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
            parts = [torch.zeros(width, dtype=torch.uint8) for _ in range(self.size)]
            dist.all_gather(parts, padded)
        except RuntimeError as exc:  # a rank stopped without saying why here: it (or the launcher) says so
            raise RankFailed(f"rank {self.rank} lost the other ranks ({str(exc).splitlines()[0][:120]})") from exc
        return [p[: int(s.item())].numpy().tobytes() for p, s in zip(parts, sizes, strict=True)]

    def agree(self, error: BaseException | None, named: bool = True) -> None:
        """Every rank says whether it failed; if any did, every rank raises RankFailed with its message
        (naming the rank, unless not `named`: work that only rank 0 does)."""
        if not self.parallel:
            if error is not None:
                raise error
            return
        said = self.exchange(json.dumps(None if error is None else error_message(error)).encode())
        failed = [(rank, json.loads(s)) for rank, s in enumerate(said) if json.loads(s) is not None]
        if failed:
            raise RankFailed(_failure(failed, self.size) if named else failed[0][1]) from error

    def broadcast(self, value: Any) -> Any:
        """Rank 0's JSON-able `value`, on every rank."""
        if not self.parallel:
            return value
        return json.loads(self.exchange(json.dumps(value).encode() if self.leader else b"")[0])


SOLO = World()


def error_message(error: BaseException) -> str:
    """What a failure says in one line: a GptlossError its text, anything else its type too."""
    if isinstance(error, GptlossError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _failure(failed: list[tuple[int, str]], size: int) -> str:
    """One line: the message, named by its rank unless every rank failed alike (bad input, say)."""
    messages = {m for _, m in failed}
    if len(failed) == size and len(messages) == 1:
        return failed[0][1]
    rank, message = failed[0]
    return message if message.startswith("rank ") else f"rank {rank}: {message}"


def share(sizes: Sequence[int], parts: int) -> list[list[int]]:
    """Items (by their sizes, in a fixed order) dealt to `parts` shares: each to the share holding the
    fewest so far (ties: the lowest). Each share keeps the items' order; the shares' totals differ by at
    most one item's size when the items come largest first."""
    shares: list[list[int]] = [[] for _ in range(parts)]
    heap = [(0, p) for p in range(parts)]
    for item, size in enumerate(sizes):
        load, p = heapq.heappop(heap)
        shares[p].append(item)
        heapq.heappush(heap, (load + int(size), p))
    return shares


def encode(items: list[tuple[int, dict[str, np.ndarray]]], error: str | None = None) -> bytes:
    """Numbered groups of named arrays (or an error) as bytes: a JSON header line, then the raw buffers."""
    header: dict[str, Any] = {"error": error, "items": []}
    buffers = []
    for number, arrays in items:
        fields = []
        for name, array in arrays.items():
            data = np.ascontiguousarray(array)
            fields.append([name, data.dtype.str, list(data.shape)])
            buffers.append(data.tobytes())
        header["items"].append([number, fields])
    return json.dumps(header).encode() + b"\n" + b"".join(buffers)


def decode(payload: bytes) -> tuple[list[tuple[int, dict[str, np.ndarray]]], str | None]:
    """What `encode` wrote."""
    cut = payload.index(b"\n")
    header = json.loads(payload[:cut])
    offset, out = cut + 1, []
    for number, fields in header["items"]:
        arrays = {}
        for name, dtype, shape in fields:
            count = int(np.prod(shape, dtype=np.int64))
            if count == 0:
                arrays[name] = np.zeros(shape, dtype=dtype)
                continue
            arrays[name] = np.frombuffer(payload, dtype=dtype, count=count, offset=offset).reshape(shape)
            offset += count * np.dtype(dtype).itemsize
        out.append((int(number), arrays))
    return out, header["error"]


@dataclass(frozen=True)
class Shard:
    """The `index`-th of `count` deterministic shares of a job's documents, for jobs with no process group
    (an array of batch jobs, machines that cannot reach each other); `gptloss merge` joins their run files.
    Documents are dealt largest first to the share with the fewest tokens, so the shares balance."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'I/N' with 0 <= I < N."""
        index, slash, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            shard = None
        if not slash or shard is None or not 0 <= shard.index < shard.count:
            raise UsageError(f"--shard {text}: give I/N with 0 <= I < N, e.g. 0/4")
        return shard

    def documents(self, sizes: Sequence[int]) -> frozenset[int]:
        """The indices of the documents (of these token counts) in this share."""
        order = sorted(range(len(sizes)), key=lambda i: -sizes[i])
        shares = share([sizes[i] for i in order], self.count)
        return frozenset(order[j] for j in shares[self.index])

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
