"""Read the texts to score: files, folders of them and standard input, decoded strictly, in bounded memory."""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from ..errors import GptlossError, UsageError
from .document import Document

STDIN = "-"
BLOCK = 1 << 16  # bytes read at a time; binary content is recognised in the first
MAX_BYTES = 64 * 1024 * 1024  # default --max-bytes: the largest text read from one file or standard input


class DecodeErrors(Enum):
    """What to do with bytes that do not decode (Python's codec error handlers)."""

    strict = "strict"
    replace = "replace"
    ignore = "ignore"
    backslashreplace = "backslashreplace"


@dataclass(frozen=True)
class FileSettings:
    """How paths become texts: the decoding, the largest text, and which files of a folder are read."""

    encoding: str = "utf-8"
    errors: DecodeErrors = DecodeErrors.strict
    max_bytes: int = MAX_BYTES
    glob: str | None = None  # within folders: a file name pattern, or with a / one for the path in the folder


TEXT = FileSettings()  # UTF-8, strict, at most MAX_BYTES, every file of a folder


@dataclass(frozen=True)
class Listing:
    """The files that paths name (a folder's files in sorted order) and what a folder held that was skipped."""

    files: list[str]
    hidden: int = 0
    binary: int = 0

    def warnings(self) -> list[str]:
        skipped = [(self.hidden, "hidden"), (self.binary, "binary")]
        said = " and ".join(f"{n} {what}" for n, what in skipped if n)
        return [f"skipped {said} file(s) in the folders given"] if said else []


def list_files(paths: list[str], settings: FileSettings = TEXT) -> Listing:
    """The files to read, in order: each path as given, and for a folder its text files, recursively, in sorted
    order of their path within it. Hidden files and folders (a name starting with .) and files whose first
    block holds a NUL byte are skipped and counted; --glob narrows a folder's files."""
    if not paths:
        raise UsageError("no input: give one or more files or folders, or - for standard input")
    if paths.count(STDIN) > 1:
        raise UsageError("standard input (-) can be read only once")
    parts = [_walk(Path(p), settings) if p != STDIN and Path(p).is_dir() else Listing([p]) for p in paths]
    found = Listing([f for p in parts for f in p.files], sum(p.hidden for p in parts), sum(p.binary for p in parts))
    if not found.files:
        raise GptlossError(f"no text files in {', '.join(p for p in paths if p != STDIN)}" + _narrowed(settings))
    return found


def _narrowed(settings: FileSettings) -> str:
    return "" if settings.glob is None else f" matching --glob {settings.glob!r}"


def _walk(folder: Path, settings: FileSettings) -> Listing:
    """A folder's text files, and the hidden and binary files it holds."""
    names: list[tuple[str, str]] = []  # (path within the folder, path to read)
    hidden_files = binary = 0
    for root, dirs, files in os.walk(folder, onerror=_unreadable):
        hidden = [d for d in dirs if d.startswith(".")]
        hidden_files += sum(_count_files(Path(root, d)) for d in hidden)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            full = Path(root, name)
            if name.startswith("."):
                hidden_files += 1
                continue
            inside = full.relative_to(folder).as_posix()
            if settings.glob is not None and not _matches(inside, settings.glob):
                continue
            if not full.is_file():  # a broken link, a socket, a fifo
                continue
            if not _is_text(full, settings.encoding):
                binary += 1
                continue
            names.append((inside, os.path.join(str(folder), inside)))
    return Listing([path for _, path in sorted(names)], hidden_files, binary)


def _unreadable(error: OSError) -> None:
    raise GptlossError(f"{error.filename}: cannot read ({error.strerror or error})")


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def _matches(inside: str, pattern: str) -> bool:
    """A pattern without a slash matches a file's name; one with a slash its path within the folder, part by
    part (* stays within a folder's name, ** stands for any number of folders)."""
    if "/" not in pattern:
        return fnmatch.fnmatchcase(inside.rsplit("/", 1)[-1], pattern)
    return _parts_match(inside.split("/"), pattern.strip("/").split("/"))


def _parts_match(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_parts_match(parts[i:], pattern[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _parts_match(parts[1:], pattern[1:])


def _is_text(path: Path, encoding: str) -> bool:
    try:
        with path.open("rb") as handle:
            return not _looks_binary(handle.read(BLOCK), encoding)
    except OSError as exc:
        raise GptlossError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def read_document(path: str, settings: FileSettings) -> Document:
    if path == STDIN:
        data = read_bounded(sys.stdin.buffer, "<stdin>", settings)
        return Document(text=decode_bytes(data, "<stdin>", settings), source="<stdin>")
    file = Path(path)
    if not file.exists():
        raise GptlossError(f"{path}: no such file")
    try:
        with file.open("rb") as handle:
            data = read_bounded(handle, path, settings)
    except OSError as exc:
        raise GptlossError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return Document(text=decode_bytes(data, path, settings), source=path)


def read_bounded(stream: BinaryIO, source: str, settings: FileSettings) -> bytes:
    """The whole of `stream`, read a block at a time: refused at the first block holding a NUL byte (binary
    content: /dev/zero ends at once) or as soon as it passes settings.max_bytes (an endless stream ends
    there), so memory never holds more than the limit."""
    blocks: list[bytes] = []
    size = 0
    while True:
        block = stream.read(min(BLOCK, settings.max_bytes + 1 - size))
        if not block:
            return b"".join(blocks)
        if _looks_binary(block, settings.encoding):
            raise GptlossError(f"{source}: looks like a binary file (NUL byte at offset {size + block.index(0)})")
        blocks.append(block)
        size += len(block)
        if size > settings.max_bytes:
            raise GptlossError(
                f"{source}: longer than --max-bytes {settings.max_bytes:,} bytes; "
                "give a larger --max-bytes to score it whole, or split it"
            )


def decode_bytes(data: bytes, source: str, settings: FileSettings) -> str:
    """Decode `data`, naming the first bad byte."""
    try:
        return data.decode(settings.encoding, errors=settings.errors.value)
    except LookupError as exc:
        raise GptlossError(f"unknown encoding {settings.encoding!r}") from exc
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
