"""Per-token records -> a terminal table, a surprisal heatmap, CSV rows. Nothing here prints."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

# Surprisal buckets in bits: [0, 1), [1, 2), [2, 4), [4, 8), [8, 12), [12, inf)
BITS_EDGES = (1.0, 2.0, 4.0, 8.0, 12.0)
HEAT = ("#1b5e20", "#33691e", "#827717", "#e65100", "#b71c1c", "#6a1b9a")  # background per bucket
MARK_BITS = 8.0  # without colour, tokens at or above this many bits are bracketed
CSV_FIELDS = (
    "source",
    "index",
    "token_id",
    "token",
    "start",
    "end",
    "logprob",
    "nll",
    "bits",
    "prob",
    "rank",
    "entropy",
    "context",
    "top",
)
WORD_CSV_FIELDS = (
    "source",
    "index",
    "word",
    "start",
    "end",
    "tokens",
    "scored_tokens",
    "logprob",
    "nll",
    "bits",
    "prob",
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def bucket(bits: float) -> int:
    return sum(bits >= edge for edge in BITS_EDGES)


def visible(text: str) -> str:
    """Control characters (escape sequences included) as their Unicode pictures, safe for a terminal."""
    return _CONTROL.sub(lambda m: chr(0x2400 + ord(m.group())) if ord(m.group()) < 0x20 else "\u2421", text)


def shown_token(token: str) -> str:
    """A token for a table cell: whitespace made visible."""
    return visible(token).replace("\n", "\u21b5").replace("\t", "\u2192").replace(" ", "\u00b7") or "\u2205"


def tokens_table(source: str, records: list[dict[str, Any]], unit: str) -> Table:
    table = Table(title=Text(source), box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    word = unit == "word"
    columns = ["#", "word" if word else "token", "bits", "prob"]
    columns += ["tokens"] if word else ["rank", "entropy", "context", "top choices"]
    for name in columns:
        table.add_column(name, justify="left" if name in ("word", "token", "top choices") else "right")
    for r in records:
        row = [str(r["index"]), shown_token(r["word" if word else "token"]), f"{r['bits']:.2f}", f"{r['prob']:.3f}"]
        if word:
            row.append(str(r["tokens"]))
        else:
            top = " ".join(f"{shown_token(t['token'])}:{t['logprob']:.2f}" for t in r.get("top", [])[:3])
            row += [str(r["rank"]), f"{r['entropy']:.2f}", str(r["context"]), top]
        table.add_row(*(Text(cell) for cell in row))  # Text: never read as markup
    return table


def heatmap(text: str, records: list[dict[str, Any]], color: bool) -> Text:
    """The document with each record's text coloured by its surprisal (bracketed when colour is off)."""
    out = Text()
    at = 0
    for r in sorted(records, key=lambda r: r["start"]):
        if r["start"] > at:
            out.append(visible(text[at : r["start"]]))
        piece = visible(text[r["start"] : r["end"]])
        if color:
            out.append(piece, style=f"white on {HEAT[bucket(r['bits'])]}")
        elif r["bits"] >= MARK_BITS and piece.strip():
            out.append(f"\u27e6{piece}\u27e7")
        else:
            out.append(piece)
        at = max(at, r["end"])
    out.append(visible(text[at:]))
    return out


def legend(color: bool) -> Text:
    if not color:
        marks = "\u27e6\u2026\u27e7"
        return Text(f"{marks} marks tokens of {MARK_BITS:g} bits or more (no colour: NO_COLOR, or not a terminal)")
    out = Text("bits: ")
    labels = [f"<{BITS_EDGES[0]:g}"]
    labels += [f"{lo:g}\u2013{hi:g}" for lo, hi in zip(BITS_EDGES, BITS_EDGES[1:], strict=False)]
    labels.append(f"\u2265{BITS_EDGES[-1]:g}")
    for label, heat in zip(labels, HEAT, strict=True):
        out.append(f" {label} ", style=f"white on {heat}")
        out.append(" ")
    return out


def csv_rows(source: str, records: Iterable[dict[str, Any]], unit: str) -> Iterator[list[Any]]:
    fields = WORD_CSV_FIELDS if unit == "word" else CSV_FIELDS
    for r in records:
        row = {**r, "source": source}
        if "top" in row:
            row["top"] = json.dumps(row["top"], ensure_ascii=False)
        yield [row.get(name, "") for name in fields]
