"""Where results go: a folder that must exist, files that appear only when whole, lines appended in one write."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from .errors import GptlossError


def require_folder(path: Path) -> None:
    """Refuse, in one line, an output file whose folder does not exist (before any work is done)."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise GptlossError(f"{path}: the folder {directory} does not exist")


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[str]]:
    """A text stream to a temporary file beside `path` that replaces it only when everything was
    written (and is removed on any error), so a crash never leaves half a result."""
    require_folder(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


class LineFile:
    """Lines appended to a file, each in one write(), so a stopped run leaves whole lines only."""

    def __init__(self, path: Path, append: bool) -> None:
        require_folder(path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            self._fd: int | None = os.open(path, flags, 0o666)
        except OSError as exc:
            raise GptlossError(f"{path}: cannot write ({exc.strerror or exc})") from exc

    def write(self, text: str) -> None:
        assert self._fd is not None
        payload = text.encode("utf-8")
        while payload:  # one write() for a line in practice; the loop only guards short writes
            payload = payload[os.write(self._fd, payload) :]

    def flush(self) -> None:
        """Nothing to do: every line is already in the file."""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
