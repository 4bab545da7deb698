"""The fields of a dataset record, checked: a bad one is a BadRecord that says where it is and what is wrong."""

from __future__ import annotations

from typing import Any

from .document import Span


class BadRecord(Exception):
    """A record that cannot be scored: reported with where it is, or skipped and counted."""


def parse_label(value: Any, column: str, where: str) -> int:
    """0 or 1 from 0/1 (numbers or strings) or false/true (JSON booleans or strings)."""
    key = value.strip().lower() if isinstance(value, str) else value
    names = {"0": 0, "1": 1, "false": 0, "true": 1}
    if isinstance(key, str) and key in names:
        return names[key]
    if isinstance(key, bool | int | float) and key in (0, 1):  # False == 0 and True == 1 too
        return int(key)
    raise BadRecord(f"{where}: column {column!r} is {value!r}, not a label (0/1 or true/false)")


def parse_messages(value: list[Any], where: str) -> list[dict[str, str]]:
    messages = []
    for i, message in enumerate(value):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)):
            raise BadRecord(f"{where}: message {i + 1} has no role")
        if not isinstance(message.get("content"), str):
            raise BadRecord(f"{where}: message {i + 1} has no text content")
        check_unicode(message["role"] + message["content"], f"{where}: message {i + 1}")
        messages.append({"role": message["role"], "content": message["content"]})
    if not messages:
        raise BadRecord(f"{where}: no messages")
    return messages


def check_unicode(text: str, what: str) -> None:
    """Refuse text no tokenizer can take: a lone surrogate (JSON allows the escape "\\udce9")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRecord(f"{what} holds a lone surrogate (U+{ord(text[exc.start]):04X}), not text") from None


def parse_spans(value: list[Any], n_chars: int, where: str) -> tuple[Span, ...]:
    spans = []
    for item in value:
        ok = isinstance(item, list | tuple) and len(item) == 2 and all(type(x) is int for x in item)
        if not ok or not 0 <= item[0] <= item[1] <= n_chars:
            raise BadRecord(f"{where}: span {item!r} is not [start, end] with 0 <= start <= end <= {n_chars}")
        spans.append((int(item[0]), int(item[1])))
    return tuple(spans)
