"""Read the texts to score: files and standard input, decoded strictly."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

from ..errors import GptlossError
from .document import Document

STDIN = "-"


class DecodeErrors(Enum):
    """What to do with bytes that do not decode (Python's codec error handlers)."""

    strict = "strict"
    replace = "replace"
    ignore = "ignore"
    backslashreplace = "backslashreplace"


def read_documents(
    paths: list[str], encoding: str = "utf-8", errors: DecodeErrors = DecodeErrors.strict
) -> list[Document]:
    """Read every path (``-`` is standard input) into a Document, in order.

    Raises GptlossError naming the file for a missing path, a directory, binary
    content, or bytes that do not decode (with the byte offset).
    """
    if not paths:
        raise GptlossError("no input: give one or more files, or - for standard input")
    if paths.count(STDIN) > 1:
        raise GptlossError("standard input (-) can be read only once")
    return [_read_one(path, encoding, errors.value) for path in paths]


def _read_one(path: str, encoding: str, errors: str) -> Document:
    if path == STDIN:
        data = sys.stdin.buffer.read()
        source = "<stdin>"
    else:
        data = _read_file(Path(path))
        source = path
    return Document(text=decode_bytes(data, source, encoding, errors), source=source)


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise GptlossError(f"{path}: no such file")
    if path.is_dir():
        raise GptlossError(f"{path}: is a directory, not a text file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GptlossError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def decode_bytes(data: bytes, source: str, encoding: str, errors: str) -> str:
    """Decode `data`, refusing binary content and naming the first bad byte."""
    if _looks_binary(data, encoding):
        offset = data.index(b"\x00")
        raise GptlossError(f"{source}: looks like a binary file (NUL byte at offset {offset})")
    try:
        return data.decode(encoding, errors=errors)
    except LookupError as exc:
        raise GptlossError(f"unknown encoding {encoding!r}") from exc
    except UnicodeDecodeError as exc:
        raise GptlossError(
            f"{source}: not valid {exc.encoding} at byte offset {exc.start} "
            f"(byte 0x{data[exc.start]:02x}); try --encoding or --errors replace"
        ) from exc


def _looks_binary(data: bytes, encoding: str) -> bool:
    # UTF-16/32 text legitimately holds NUL bytes; every other encoding we accept does not.
    if encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
        return False
    return b"\x00" in data
