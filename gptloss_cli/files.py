"""Where results go: a folder that must exist, files that appear only when whole, lines appended in one write,
and outputs claimed before the work (never an input, one writer each)."""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk, a quota: said of the file the user named
            raise _cannot_write(path, exc) from exc
        raise


def _cannot_write(path: Path, exc: OSError) -> GptlossError:
    return GptlossError(f"{path}: cannot write ({exc.strerror or exc})")


def write_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


class LineFile:
    """Lines appended to a file, each in one write(), so a stopped run leaves whole lines only."""

    def __init__(self, path: Path, append: bool) -> None:
        require_folder(path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self._path = path
        try:
            self._fd: int | None = os.open(path, flags, 0o666)
        except OSError as exc:
            raise _cannot_write(path, exc) from exc

    def write(self, text: str) -> None:
        assert self._fd is not None
        payload = text.encode("utf-8")
        try:
            while payload:  # one write() for a line in practice; the loop only guards short writes
                payload = payload[os.write(self._fd, payload) :]
        except OSError as exc:
            raise _cannot_write(self._path, exc) from exc

    def flush(self) -> None:
        """Nothing to do: every line is already in the file."""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of what `path` names, through links (standard input's for -); None when nothing is there."""
    try:
        status = os.fstat(0) if path == "-" else os.stat(path)
    except (OSError, ValueError):
        return None
    if path == "-" and not stat.S_ISREG(status.st_mode):
        return None  # a pipe or terminal: nothing an output could overwrite
    return status.st_dev, status.st_ino


class Outputs:
    """The files a command will write, claimed before any work: each must not be one of the inputs (however it is
    spelled: the same device and inode), nor another output, nor a folder; its folder must take a new file; and it
    gets one writer, an exclusive lock held until the command ends (a lock file beside it, which the OS
    unlocks when the process dies, so a killed run leaves no stale lock). Use as a context manager."""

    def __init__(self, *named: tuple[str, Path | None]) -> None:
        self.named = [(flag, path) for flag, path in named if path is not None]
        self._locks: list[tuple[Path, int]] = []

    def take(self, inputs: Sequence[str], lock: bool = True) -> None:
        """Check the outputs against `inputs` (paths; - for standard input) and lock them (when `lock`)."""
        read = [(path, _identity(path)) for path in inputs]
        seen: dict[object, str] = {}
        for flag, path in self.named:
            require_folder(path)
            if path.is_dir():
                raise GptlossError(f"{flag} {path}: is a folder; give a file name")
            here = _identity(str(path))
            for source, identity in read:
                if here is not None and here == identity:
                    shown = "standard input" if source == "-" else source
                    raise GptlossError(
                        f"{flag} {path}: is the input {shown}; give another {flag} (it would be overwritten)"
                    )
            key = here or os.path.join(os.path.realpath(path.parent), path.name)
            if key in seen:
                raise GptlossError(f"{flag} {path}: is also {seen[key]}; give each output its own file")
            seen[key] = f"{flag} {path}"
            if here is not None and not os.access(path, os.W_OK):
                raise GptlossError(f"{flag} {path}: is read-only; give another {flag}")
        if lock:
            for flag, path in self.named:
                self._locks.append(_lock(flag, path))

    def release(self) -> None:
        while self._locks:
            lock_path, fd = self._locks.pop()
            lock_path.unlink(missing_ok=True)  # still held: nobody else can have taken it meanwhile
            os.close(fd)

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock(flag: str, path: Path) -> tuple[Path, int]:
    """An exclusive lock on `path`'s lock file, or one line saying who holds it or why none can be made."""
    lock_path = path.with_name(f".{path.name}.lock")
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise GptlossError(f"{flag} {path}: cannot write in {path.parent} ({exc.strerror or exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise GptlossError(
                f"{flag} {path}: another gptloss run is writing it{who}; let it finish or give another {flag}"
            ) from None
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:  # not removed by its last holder meanwhile
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return lock_path, fd
