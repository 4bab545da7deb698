"""The one engine loop: planned windows -> batches -> a measure per batch -> per-document columns.

Alignment (one window, BOS prepended, tokens x0..x3 of the document)::

    input position   0      1    2    3    4
    input token      <bos>  x0   x1   x2   x3
    predicts         x0     x1   x2   x3   (next, unused)

The hidden state at input position j is fed to the LM head to score the token at position j + 1.
Only scored positions go through the head, a block at a time. What is computed there is the
Measure's business (NLL; NLL with rank, entropy and top-k; two models at once for compare): the
loop, the batching, the order and the assembly into documents are the same for every command.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ..errors import GptlossError
from .batches import all_windows, batches, model_batch
from .distributed import SOLO, RankFailed, World, decode, encode, error_message, share
from .measures import Measure, NllValues, Values
from .plan import Plan
from .windows import TokenizedDocument, Window

Progress = Callable[[int], None]  # called with the number of tokens just scored
V = TypeVar("V", bound=Values)


@dataclass(frozen=True)
class Scored:
    """The scored tokens of one window, or of one whole document, in position order."""

    positions: np.ndarray  # (k,) int64 document token indices, increasing
    context: np.ndarray  # (k,) int64 tokens the model saw before each (BOS included)
    values: Values  # what the measure gave (measures.NllValues, ...): columns (k, ...), float64, int64 or bool

    @property
    def nll(self) -> np.ndarray:
        return self.values_as(NllValues).nll

    def values_as(self, kind: type[V]) -> V:
        """The values as the record `kind` (what the measure gives, or a record it extends); a TypeError if
        they were measured otherwise."""
        if not isinstance(self.values, kind):
            raise TypeError(f"these tokens were measured as {type(self.values).__name__}, not {kind.__name__}")
        return self.values


@dataclass(frozen=True)
class DocumentLosses(Scored):
    """A document's scored tokens, with the tokenized document they index into."""

    tokens: TokenizedDocument | None = None


class Scorer:
    """Scores tokenized documents with a measure, on one device; in a world of several ranks, each scores
    its share of the windows and every rank gets every window's values (see core.distributed)."""

    def __init__(self, measure: Measure, device: str | torch.device, world: World = SOLO) -> None:
        self.measure = measure
        self.device = torch.device(device)
        self.world = world

    def score(
        self, docs: list[TokenizedDocument], plan: Plan, progress: Progress | None = None
    ) -> list[DocumentLosses]:
        """Every document's scored tokens, in input order."""
        done = dict(self.documents(docs, plan, progress))
        return [done[i] for i in range(len(docs))]

    def documents(
        self,
        docs: list[TokenizedDocument],
        plan: Plan,
        progress: Progress | None = None,
        skip: frozenset[int] = frozenset(),
        within: frozenset[int] | None = None,
    ) -> Iterator[tuple[int, DocumentLosses]]:
        """(index, losses) of each document as soon as its last window is scored; windows sorted by
        length share batches. Only the documents `within` (None: all) are scored, as if they were the
        whole input; of those, the ones in `skip` are not (see `_run`)."""
        windows = all_windows(docs, plan, in_order=False)
        if within is not None:
            windows = [w for w in windows if w.doc in within]
        left = Counter(w.doc for w in windows)
        for i, doc in enumerate(docs):
            if left[i] == 0 and i not in skip and (within is None or i in within):
                yield i, assemble(doc, [], self.measure.kind)
        parts: dict[int, list[Scored]] = defaultdict(list)
        for window, part in self._run(docs, plan, windows, progress, skip):
            parts[window.doc].append(part)
            left[window.doc] -= 1
            if left[window.doc] == 0:
                yield window.doc, assemble(docs[window.doc], parts.pop(window.doc), self.measure.kind)

    def windows(
        self, docs: list[TokenizedDocument], plan: Plan, progress: Progress | None = None
    ) -> Iterator[tuple[Window, Scored]]:
        """Each window's scored tokens in document order, as soon as its batch is done, so a caller
        can stream a document's tokens while the rest is scored."""
        windows = all_windows(docs, plan, in_order=True)
        if not self.world.parallel:
            return self._run(docs, plan, windows, progress, frozenset())
        return _in_order(windows, self._run(docs, plan, windows, progress, frozenset()))

    def _run(
        self,
        docs: list[TokenizedDocument],
        plan: Plan,
        windows: list[Window],
        progress: Progress | None,
        skip: frozenset[int],
    ) -> Iterator[tuple[Window, Scored]]:
        """The loop. skip: documents whose windows are not wanted. Batches are formed as if nothing were
        skipped and only those holding a wanted window run, so a resumed run scores each remaining window
        in the same batch, with the same padding, as an uninterrupted one: the same numbers, bit for bit."""
        if self.world.parallel:
            yield from self._shared(docs, plan, [w for w in windows if w.doc not in skip], progress)
            return
        with torch.inference_mode():
            for batch in batches(windows, plan, self.device):
                if all(w.doc in skip for w in batch):
                    continue
                parts = self._batch(docs, batch, plan)
                wanted = [(w, p) for w, p in zip(batch, parts, strict=True) if w.doc not in skip]
                if progress:
                    progress(sum(len(p.positions) for _, p in wanted))
                yield from wanted

    def _shared(
        self, docs: list[TokenizedDocument], plan: Plan, windows: list[Window], progress: Progress | None
    ) -> Iterator[tuple[Window, Scored]]:
        """The loop on one rank of several: this rank's share in batches, and after each batch every rank's
        windows of that round, on every rank (a rank with no batch left sends none)."""
        world = self.world
        shares = share([w.end - w.start for w in windows], world.size)
        rounds = [list(batches([windows[i] for i in s], plan, self.device)) for s in shares]
        number = {id(w): i for i, w in enumerate(windows)}
        with torch.inference_mode():
            for r in range(max((len(b) for b in rounds), default=0)):
                mine = rounds[world.rank][r] if r < len(rounds[world.rank]) else []
                try:
                    parts = self._batch(docs, mine, plan) if mine else []
                    payload = encode([(number[id(w)], _fields(p)) for w, p in zip(mine, parts, strict=True)])
                except Exception as exc:  # every rank learns of it at this round's exchange
                    payload = encode([], error_message(exc))
                received = [decode(p) for p in world.exchange(payload)]
                failed = [(rank, error) for rank, (_, error) in enumerate(received) if error is not None]
                if failed:
                    raise RankFailed(f"rank {failed[0][0]}: {failed[0][1]}")
                kind = self.measure.kind
                done = [(windows[n], _scored(fields, kind)) for items, _ in received for n, fields in items]
                if progress:
                    progress(sum(len(p.positions) for _, p in done))
                yield from done

    def _batch(self, docs: list[TokenizedDocument], batch: list[Window], plan: Plan) -> list[Scored]:
        inputs = model_batch(docs, batch, plan, self.device)
        values = self.measure(inputs).to_numpy()  # columns (M, ...)
        for name, value in values.columns().items():
            bad = int((~np.isfinite(value)).sum()) if value.dtype.kind == "f" else 0
            if bad:
                raise GptlossError(
                    f"{bad} of {value.size} values of {name} are not finite (NaN or inf): the model overflows in "
                    "its dtype (float16 does in some models' activations, Gemma's among them); use bfloat16 or float32"
                )
        out, lo = [], 0
        for positions, context in inputs.meta:
            hi = lo + len(positions)
            out.append(Scored(positions, context, values.take(lo, hi)))
            lo = hi
        return out


def _fields(part: Scored) -> dict[str, np.ndarray]:
    """A window's scored tokens as named arrays, as the ranks exchange them (core.distributed)."""
    values = part.values.columns()
    return {"positions": part.positions, "context": part.context, **{f"v.{k}": v for k, v in values.items()}}


def _scored(fields: dict[str, np.ndarray], kind: type[Values]) -> Scored:
    values = kind.of({k[2:]: v for k, v in fields.items() if k.startswith("v.")})
    return Scored(fields["positions"], fields["context"], values)


def _in_order(windows: list[Window], stream: Iterator[tuple[Window, Scored]]) -> Iterator[tuple[Window, Scored]]:
    """A stream of windows in any order, put back in the order of `windows` (held until their turn)."""
    place = {id(w): i for i, w in enumerate(windows)}
    held: dict[int, tuple[Window, Scored]] = {}
    turn = 0
    for window, part in stream:
        held[place[id(window)]] = (window, part)
        while turn in held:
            yield held.pop(turn)
            turn += 1


def assemble(doc: TokenizedDocument, parts: list[Scored], kind: type[Values]) -> DocumentLosses:
    """A document's windows joined and put in position order (windows may come in any order); kind: the
    measure's record, of which a document with no scored token gets an empty one."""
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return DocumentLosses(empty, empty, kind.empty(), doc)
    positions = np.concatenate([p.positions for p in parts])
    order = np.argsort(positions, kind="stable")
    values = kind.concat([p.values for p in parts]).map(lambda column: column[order])
    context = np.concatenate([p.context for p in parts])[order]
    return DocumentLosses(positions[order], context, values, doc)
