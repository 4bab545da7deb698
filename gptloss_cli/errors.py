"""The one error type a user sees, and how it is shown."""

from __future__ import annotations


class GptlossError(Exception):
    """A problem the user can fix, carrying one line written for a person.

    `main()` prints it on stderr without a traceback and exits 1; set
    `GPTLOSS_DEBUG=1` to see the traceback as well.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    exit_code = 1

    def __str__(self) -> str:
        return self.message


class UsageError(GptlossError):
    """A command line that cannot work whatever the input: an option's value out of its range, or options that
    do not go together. Shown like any GptlossError, but the exit code is 2, as for the parser's own errors."""

    exit_code = 2


def first_line(exc: BaseException, root: bool = False) -> str:
    """The first line of an exception's message (its type's name when it has none), for a one-line
    error. root: of the innermost cause (libraries that wrap a parser's error in a generic one)."""
    while root and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
