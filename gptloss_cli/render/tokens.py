"""Per-token (or per-word) records -> a terminal table, a surprisal heatmap, CSV rows and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ..core.totals import Totals
from ..inputs.document import Document
from ..tasks.tokens import AnyRecord, TokenRecord, WordRecord
from .format import bucket, bucket_labels, probability, shown_token, to_json, visible

# Surprisal buckets in bits: [0, 1), [1, 2), [2, 4), [4, 8), [8, 12), [12, inf)
BITS_EDGES = (1.0, 2.0, 4.0, 8.0, 12.0)
HEAT = ("#1b5e20", "#33691e", "#827717", "#e65100", "#b71c1c", "#6a1b9a")  # background per bucket
MARK_BITS = 8.0  # without colour, tokens at or above this many bits are bracketed
CSV_FIELDS = (
    *("source", "index", "token_id", "token", "start", "end", "logprob", "nll", "bits", "prob"),
    *("rank", "entropy", "context", "top"),
)
WORD_CSV_FIELDS = (
    *("source", "index", "word", "start", "end", "tokens", "scored_tokens"),
    *("logprob", "nll", "bits", "prob"),
)


def tokens_table(source: str, records: Sequence[AnyRecord], unit: str) -> Table:
    table = Table(title=Text(visible(source)), box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    word = unit == "word"
    columns = ["#", "word" if word else "token", "bits", "prob"]
    columns += ["tokens"] if word else ["rank", "entropy", "context", "top choices"]
    for name in columns:
        table.add_column(name, justify="left" if name in ("word", "token", "top choices") else "right")
    for r in records:
        row = [str(r.index), shown_token(r.text), f"{r.bits:.2f}", probability(r.logprob)]
        if isinstance(r, WordRecord):
            row.append(str(r.tokens))
        else:
            top = " ".join(f"{shown_token(t.token)}:{t.logprob:.2f}" for t in r.top[:3])
            row += [str(r.rank), f"{r.entropy:.2f}", str(r.context), top]
        table.add_row(*(Text(cell) for cell in row))  # Text: never read as markup
    return table


def table_legend(unit: str) -> Text:
    """What the table's columns mean, in one paragraph under the tables."""
    if unit == "word":
        what = "bits: −log₂ p of the word (its tokens' log p summed) · prob: p · tokens: tokens in the word"
    else:
        what = (
            "bits: −log₂ p of the token · prob: p · rank: 1 + the tokens the model ranked above it · "
            "entropy: of the model's next-token distribution, in nats · context: tokens the model saw before "
            "it (BOS included) · top choices: the 3 most likely tokens, with log p in nats"
        )
    marks = (
        "In the text: \u00b7 a space, \u21b5 a newline, \u2192 a tab, \u2205 an empty piece, \u241b a control "
        "character, <U+202E> an invisible or bidi character by its code point"
    )
    return Text(f"{what}. {marks}", style="dim")


def heatmap(text: str, records: Sequence[AnyRecord], color: bool) -> Text:
    """The document with each record's text coloured by its surprisal (bracketed when colour is off)."""
    out = Text()
    at = 0
    for r in sorted(records, key=lambda r: r.start):
        if r.start > at:
            out.append(visible(text[at : r.start]))
        piece = visible(text[r.start : r.end])
        if color:
            out.append(piece, style=f"white on {HEAT[bucket(r.bits, BITS_EDGES)]}")
        elif r.bits >= MARK_BITS and piece.strip():
            out.append(f"\u27e6{piece}\u27e7")
        else:
            out.append(piece)
        at = max(at, r.end)
    out.append(visible(text[at:]))
    return out


def legend(color: bool) -> Text:
    if not color:
        marks = "\u27e6\u2026\u27e7"
        return Text(f"{marks} marks tokens of {MARK_BITS:g} bits or more (no colour: NO_COLOR, or not a terminal)")
    out = Text("bits: ")
    for label, heat in zip(bucket_labels(BITS_EDGES), HEAT, strict=True):
        out.append(f" {label} ", style=f"white on {heat}")
        out.append(" ")
    return out


def tokens_view(
    documents: Sequence[Document], records: Sequence[Sequence[AnyRecord]], unit: str, heat: bool, color: bool
) -> RenderableType:
    """A table per document, or (heat) a legend and each document's heatmap."""
    if not heat:
        tables = [tokens_table(d.source, recs, unit) for d, recs in zip(documents, records, strict=True)]
        return Group(*tables, table_legend(unit))
    parts: list[RenderableType] = [legend(color)]
    for doc, recs in zip(documents, records, strict=True):
        parts += [Rule(Text(visible(doc.source)), align="left"), heatmap(doc.text, recs, color)]
    return Group(*parts)


def csv_header(unit: str) -> tuple[str, ...]:
    return WORD_CSV_FIELDS if unit == "word" else CSV_FIELDS


def csv_rows(source: str, records: Iterable[AnyRecord], unit: str) -> Iterator[list[Any]]:
    fields = csv_header(unit)
    for r in records:
        row = {**r.to_dict(), "source": source}
        if isinstance(r, TokenRecord):
            row["top"] = json.dumps(row["top"], ensure_ascii=False)
        yield [row.get(name, "") for name in fields]


def tokens_json(
    header: dict[str, Any],
    documents: Sequence[Document],
    records: Sequence[Sequence[AnyRecord]],
    totals: Sequence[Totals | None],
    unit: str,
) -> str:
    """The gptloss.tokens/v1 document as JSON text (see tokens_document)."""
    return to_json(tokens_document(header, documents, records, totals, unit))


def tokens_document(
    header: dict[str, Any],
    documents: Sequence[Document],
    records: Sequence[Sequence[AnyRecord]],
    totals: Sequence[Totals | None],
    unit: str,
) -> dict[str, Any]:
    """The gptloss.tokens/v1 document: the header, then each document's totals and records."""
    key = "words" if unit == "word" else "tokens"
    docs = [
        {"source": d.source, "totals": t.to_dict() if t is not None else None, key: [r.to_dict() for r in recs]}
        for d, recs, t in zip(documents, records, totals, strict=True)
    ]
    return {**header, "documents": docs}
