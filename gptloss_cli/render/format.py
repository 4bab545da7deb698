"""How numbers, tokens and scales are written, once for every renderer."""

from __future__ import annotations

import json
import math
import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

DASH = "—"
HIDDEN = ("Cc", "Cf", "Cs")  # Unicode categories `visible` marks: control, format (invisible), surrogate
_WHITESPACE = str.maketrans({"\n": "\u21b5", "\t": "\u2192", " ": "\u00b7"})


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


def probability(logprob: float) -> str:
    """p = exp(logprob) in 3 significant digits, in scientific notation below 1e-4 (2.1e-05): a small p never
    reads 0.000. Below the float range it is worked out from log10 p (1.23e-400)."""
    p = math.exp(logprob)
    if p >= 1e-300 or not math.isfinite(logprob):
        return f"{p:.3g}"
    exponent = math.floor(logprob / math.log(10))
    mantissa = float(f"{10 ** (logprob / math.log(10) - exponent):.3g}")
    if mantissa >= 10:  # 9.996 rounds up to the next power of ten
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:g}e{exponent:+03d}"


@cache
def _hidden() -> re.Pattern[str]:
    """Every character `visible` replaces, from this Python's Unicode data: control characters but tab and
    newline, invisible format characters (category Cf: bidi controls such as U+202E, zero-width spaces and
    joiners, the soft hyphen, tag characters, ...) and lone surrogates."""
    codes = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in HIDDEN and c not in (9, 10)]
    runs: list[list[int]] = []
    for code in codes:
        if runs and runs[-1][1] == code - 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    return re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in runs) + "]")


def _mark(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # a C0 control's picture: ␛ for escape
    return "\u2421" if code == 0x7F else f"<U+{code:04X}>"


def char_name(char: str) -> str:
    """U+202E RIGHT-TO-LEFT OVERRIDE; a control character by its picture's name (U+001B ESCAPE)."""
    code = ord(char)
    name = unicodedata.name(char, "")
    if not name and (code < 0x20 or code == 0x7F):
        name = unicodedata.name(_mark(char)).removeprefix("SYMBOL FOR ")
    kind = {"Cc": "control character", "Cs": "lone surrogate"}.get(unicodedata.category(char), "")
    return f"U+{code:04X} {name or kind}".rstrip()


def visible(text: str) -> str:
    """The text safe for a terminal and unable to hide or reorder itself: control characters (escape
    sequences included) as their Unicode pictures (␛), invisible format characters and bidi controls as
    marks (<U+202E>); newline and tab kept for the layout."""
    return _hidden().sub(lambda m: _mark(m.group()), text)


def marked(text: str, whitespace: bool = False) -> Iterator[tuple[str, str]]:
    """`text` in runs, for renderers that style the marks: (plain text, "") and, for each character `visible`
    replaces, (its mark, its name). With `whitespace`, spaces, newlines and tabs in the plain runs as · ↵ →."""
    at = 0
    for m in _hidden().finditer(text):
        if m.start() > at:
            plain = text[at : m.start()]
            yield (plain.translate(_WHITESPACE) if whitespace else plain), ""
        yield _mark(m.group()), char_name(m.group())
        at = m.end()
    if at < len(text):
        yield (text[at:].translate(_WHITESPACE) if whitespace else text[at:]), ""


def shown_token(token: str) -> str:
    """A token for a table cell: whitespace made visible, as every hidden character; ∅ for none."""
    return visible(token).translate(_WHITESPACE) or "\u2205"


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
