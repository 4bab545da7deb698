"""score's analyses options: loss by context position, membership scores, and the context-length curve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

from ..errors import UsageError
from ..tasks.analyses import Analyses
from .options import OptionGroup, panel_option


@dataclass(frozen=True)
class AnalysisSettings:
    """score's analyses, and the context lengths of a --context-lengths curve (empty: none)."""

    analyses: Analyses
    context_lengths: tuple[int, ...] = ()


def _analyses(by_position: int | None, membership: bool, min_k: float, context_lengths: str | None) -> AnalysisSettings:
    if not 0 < min_k <= 1:
        raise UsageError(f"--min-k {min_k}: give a fraction in (0, 1], e.g. 0.2")
    lengths: tuple[int, ...] = ()
    if context_lengths is not None:
        try:
            lengths = tuple(sorted({int(x) for x in context_lengths.split(",") if x.strip()}))
        except ValueError:
            lengths = ()
        if not lengths or lengths[0] < 4:
            raise UsageError(f"--context-lengths {context_lengths}: give lengths of at least 4, e.g. 256,512,1024")
    return AnalysisSettings(Analyses(by_position, min_k if membership else None), lengths)


ANALYSES_PANEL = "Analyses"
ANALYSES = OptionGroup(
    {
        "by_position": Annotated[
            Optional[int],  # noqa: UP045
            panel_option(
                min=1,
                metavar="B",
                panel=ANALYSES_PANEL,
                help="Loss by context position: tokens grouped by how many tokens they saw before them, "
                "in buckets of B (per document and in total).",
            ),
        ],
        "membership": Annotated[
            bool,
            panel_option(
                panel=ANALYSES_PANEL,
                help="Membership (contamination) scores per document: Min-K% Prob, Min-K%++ and zlib ratio.",
            ),
        ],
        "min_k": Annotated[
            float, panel_option(panel=ANALYSES_PANEL, help="k of Min-K% and Min-K%++: the fraction of lowest tokens.")
        ],
        "context_lengths": Annotated[
            Optional[str],  # noqa: UP045
            panel_option(
                metavar="L1,L2,...",
                panel=ANALYSES_PANEL,
                help="PPL of the same tokens (those after the first max(L) of each document) with windows of each "
                "L and stride L/2: how the loss falls as the context grows.",
            ),
        ],
    },
    _analyses,
    {"by_position": None, "membership": False, "min_k": 0.2, "context_lengths": None},
)
