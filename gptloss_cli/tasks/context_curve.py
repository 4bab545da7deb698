"""`score --context-lengths L1,L2,...`: the loss of the same tokens as the context grows.

For each L the documents are scored with windows of L tokens (BOS included) advancing by L/2, so each new
token sees between about L/2 and L tokens before it; only the tokens after the first max(L) of each document
count, the same tokens for every L. One row per L: its windows, the context range its tokens actually had,
and their mean NLL and PPL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..core.distributed import SOLO, World
from ..core.plan import WindowSettings
from ..core.presets import DEFAULT, preset
from ..core.totals import Totals
from ..core.windows import TokenizedDocument
from ..errors import GptlossError, UsageError
from ..inputs.document import Document
from ..models.spec import LoadedModel
from .job import QUIET, Tracker, settings_dict
from .score import ScoreRun

CURVE_SCHEMA = "gptloss.context-curve/v1"


@dataclass(frozen=True)
class CurvePoint:
    length: int
    stride: int
    totals: Totals
    context: tuple[int, int] | None  # the fewest and most tokens a counted token saw before it

    def to_dict(self) -> dict[str, Any]:
        low, high = self.context or (None, None)
        return {"max_length": self.length, "stride": self.stride, "context_min": low, "context_max": high} | {
            k: v for k, v in self.totals.to_dict().items() if k not in ("bytes", "words", "bits_per_byte")
        }


@dataclass(frozen=True)
class ContextCurve:
    model: dict[str, Any]
    settings: dict[str, Any]
    skipped: int  # tokens at the start of each document that no point counts: max(L)
    points: list[CurvePoint]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": CURVE_SCHEMA,
            "model": self.model,
            "settings": self.settings | {"context_lengths": [p.length for p in self.points], "skipped": self.skipped},
            "points": [p.to_dict() for p in self.points],
        }


class LateTokens(ScoreRun):
    """A scoring run in which only the tokens after the first `skip` of each document count."""

    def __init__(
        self, loaded: LoadedModel, documents: Sequence[Document], settings: WindowSettings, world: World, skip: int
    ) -> None:
        self.skip = skip  # set first: the constructor tokenizes
        super().__init__(loaded, documents, settings, world)

    def tokenize(self, document: Document) -> TokenizedDocument:
        tokens = super().tokenize(document)
        late = np.arange(len(tokens)) >= self.skip  # (n,)
        return replace(tokens, scored=late if tokens.scored is None else late & tokens.scored)


def context_curve(
    loaded: LoadedModel,
    documents: Sequence[Document],
    *,
    lengths: Sequence[int],
    settings: WindowSettings | None = None,
    tracker: Tracker = QUIET,
    world: World = SOLO,
) -> ContextCurve:
    """The same tokens scored with windows of each length (see the module docstring).

    Args:
        loaded: The model.
        documents: What it scores.
        lengths: The windows' lengths, ascending; each advances by half its length.
        settings: Everything but the windows (BOS, batch size); the gptloss protocol only.
        tracker: Told of the work ahead and done, length by length.
        world: The ranks that share the work (core.distributed).
    """
    settings = settings or WindowSettings()
    if preset(settings.protocol) is not preset(DEFAULT):
        raise UsageError("--context-lengths lays out its own windows: use it without --protocol")
    skip = max(lengths)
    points, plan = [], None
    for length in lengths:
        windows = replace(settings, max_length=length, stride=max(1, length // 2))
        run = LateTokens(loaded, documents, windows, world, skip)
        if run.tokens_to_score() == 0:
            raise GptlossError(f"--context-lengths: no document is longer than {skip} tokens, the longest length")
        tracker.start(run.tokens_to_score(), len(documents))
        scores = list(run.scores(tracker.advance))
        contexts = [s.losses.context for s in scores if s.losses is not None and len(s.losses.context)]
        both = np.concatenate(contexts) if contexts else np.zeros(0, dtype=np.int64)
        context = (int(both.min()), int(both.max())) if len(both) else None
        points.append(CurvePoint(length, run.plan.stride, Totals.combine([s.totals for s in scores]), context))
        plan = run.plan
    assert plan is not None
    return ContextCurve(loaded.info.to_dict(), settings_dict(plan), skip, points)
