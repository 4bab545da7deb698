"""A loaded model's forward pass up to its LM head at the scored positions of the engine's batches: whatever
runs the model (a models.backend.Backend) hands the head's inputs over, in one part or in pieces."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..models.backend import Backend
from ..models.spec import LoadedModel
from .batches import ModelBatch
from .lmhead import Head


class ModelHead:
    """A backend over the engine's batches: the LM head's inputs at a batch's scored positions."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def in_pieces(self) -> bool:
        """Whether the parts are lent one at a time (see Backend.in_pieces): not to keep, not to call whole."""
        return self.backend.in_pieces

    def parts(self, batch: ModelBatch) -> Iterator[tuple[slice, Head]]:
        """(positions of the batch's M, their head inputs) in order."""
        return self.backend.heads(batch.ids, batch.mask, batch.rows, batch.cols)

    def __call__(self, batch: ModelBatch) -> Head:
        """The whole batch's head inputs, from a backend that hands them over in one part."""
        ((_, head),) = self.parts(batch)
        return head


def model_head(loaded: LoadedModel) -> ModelHead:
    """How a loaded model gives its head."""
    return ModelHead(loaded.backend)


class HeadCache:
    """Model A's head inputs, batch by batch, kept from a first pass over the documents so that passes against
    other models (compare's candidates) reuse them instead of running A again. The batches of every pass come
    in the same order (same plan, same windows), which is what makes the n-th entry the n-th batch's."""

    def __init__(self) -> None:
        self.heads: list[Head] = []
        self.filled = False
        self._next = 0
        self._key: object = None

    def start(self, key: object) -> None:
        """A new pass over the batches that `key` (the plan and the documents' ids) lays out: the first pass
        fills the cache, later ones with the same key read it; another key starts afresh."""
        if key != self._key or not self.filled:  # a pass that stopped part way leaves nothing to read
            self.heads, self.filled, self._key = [], False, key
        self._next = 0

    def finish(self) -> None:
        self.filled = True

    def get(self, compute: Callable[[], Head]) -> Head:
        if not self.filled:
            self.heads.append(compute())
            return self.heads[-1]
        self._next += 1
        return self.heads[self._next - 1]
