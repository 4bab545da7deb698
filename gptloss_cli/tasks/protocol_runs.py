"""`score --protocol all`: the same model and documents under every preset, to see why the numbers differ."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core.distributed import SOLO, World
from ..core.plan import WindowSettings
from ..core.presets import Preset, preset
from ..errors import GptlossError
from ..inputs.document import Document
from ..models.spec import LoadedModel
from .job import Tracker
from .score import ScoreResult, ScoreRun


@dataclass(frozen=True, eq=False)
class PresetRun:
    """One preset's result, or why it could not run on these documents (too short for llama.cpp, say)."""

    preset: Preset
    result: ScoreResult | None
    error: str | None = None


def score_presets(
    loaded: LoadedModel,
    documents: Sequence[Document],
    presets: Sequence[WindowSettings],
    tracker: Tracker,
    world: World = SOLO,
) -> list[PresetRun]:
    runs = []
    for settings in presets:
        try:
            run = ScoreRun(loaded, documents, settings, world)
            result = run.run(tracker) if run.tokens_to_score() else None
            runs.append(PresetRun(preset(settings.protocol), result, None if result else "nothing to score"))
        except GptlossError as exc:
            runs.append(PresetRun(preset(settings.protocol), None, str(exc)))
    return runs
