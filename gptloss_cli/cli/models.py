"""`gptloss models`: the bundled models, installed or not, converted or not, and their size."""

from __future__ import annotations

from ..models.catalog import bundled_status
from ..models.spec import BUNDLED
from .console import emit
from .options import Format, FormatOpt


def models(fmt: FormatOpt = Format.table) -> None:
    """List the bundled models: installed or not, converted (cached) or not, and size."""
    from ..render.format import to_json
    from ..render.models import status_table

    rows = [bundled_status(b) for b in BUNDLED.values()]
    if fmt is Format.json:
        emit(to_json({"schema": "gptloss.models/v1", "models": [r.to_dict() for r in rows]}), None)
    else:
        emit(status_table(rows), None)
