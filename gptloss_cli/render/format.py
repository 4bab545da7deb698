"""How numbers, tokens and scales are written, once for every renderer."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

DASH = "—"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def to_json(data: dict[str, Any]) -> str:
    """Strict JSON (no NaN or Infinity), two-space indented, ending in a newline."""
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def json_line(data: dict[str, Any]) -> str:
    """One strict JSON object on one line, ending in a newline."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n"


def num(value: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals; from 100,000 up, 3 significant digits; a dash for none or infinity."""
    if value is None or not math.isfinite(value):
        return DASH
    if abs(value) >= 1e5:
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


def sig4(x: float | None) -> str:
    """4 significant digits below 1 and from 1e6, else 4 decimals without trailing zeros (explain's cells)."""
    if x is None or math.isnan(x):
        return DASH
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    if abs(x) < 1 or abs(x) >= 1e6:
        return f"{x:.4g}"
    return f"{x:.4f}".rstrip("0").rstrip(".")


def interval(ci: Sequence[float] | None, digits: int = 2) -> str:
    return DASH if ci is None else f"{num(ci[0], digits)}–{num(ci[1], digits)}"


def visible(text: str) -> str:
    """Control characters (escape sequences included) as their Unicode pictures, safe for a terminal."""
    return _CONTROL.sub(lambda m: chr(0x2400 + ord(m.group())) if ord(m.group()) < 0x20 else "\u2421", text)


def shown_token(token: str) -> str:
    """A token for a table cell: whitespace made visible."""
    return visible(token).replace("\n", "\u21b5").replace("\t", "\u2192").replace(" ", "\u00b7") or "\u2205"


def middle_cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, its middle replaced by … when it is longer. The end tells files
    apart, so it keeps the last path component whole when that fits (sample_te…/inventory.txt), else two
    thirds of the room."""
    if len(text) <= width:
        return text
    if width < 2:
        return text[:width]
    slash = text.rfind("/")
    tail = len(text) - slash if 0 < slash and len(text) - slash <= width - 3 else width - 1 - (width - 1) // 3
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


def bucket(value: float, edges: Sequence[float]) -> int:
    """Index of the bucket of `value` among [-inf, e0), [e0, e1), ..., [e_last, inf)."""
    return sum(value >= edge for edge in edges)


def bucket_labels(edges: Sequence[float], between: str = "–") -> list[str]:
    """Labels of the buckets `bucket` counts: <e0, e0–e1, ..., ≥e_last."""
    labels = [f"<{edges[0]:g}"]
    labels += [f"{lo:g}{between}{hi:g}" for lo, hi in zip(edges, edges[1:], strict=False)]
    return [*labels, f"\u2265{edges[-1]:g}"]
