"""A document: one text to score, where it came from, and which of its characters count."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

Span = tuple[int, int]


@dataclass(frozen=True)
class Document:
    """One text to score and where it came from.

    spans: the character ranges [start, end) whose tokens are scored (a loss mask: the model still
    sees the whole text as context); None scores every token. label: its class, for detection metrics.
    """

    text: str
    source: str
    spans: tuple[Span, ...] | None = None
    label: int | None = None  # 0 or 1, from --label-column: detection metrics (score, compare)


def documents_digest(documents: Sequence[Document]) -> str:
    """sha256 of the documents' texts, scored spans and labels, in order: a resumed run must score the same
    ones. Not of their sources: the same file named another way (./a.txt, its absolute path) is the same data."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(json.dumps([doc.text, doc.spans, doc.label], ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()
