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

    def __str__(self) -> str:
        return self.message
