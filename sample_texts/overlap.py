"""Split a long sequence into overlapping windows so that every item is counted once."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    start: int
    end: int
    first_scored: int


def plan(length: int, size: int, step: int) -> list[Window]:
    if size < 1 or step < 1:
        raise ValueError("size and step must be positive")
    step = min(step, size)
    windows = []
    end = min(length, size)
    windows.append(Window(0, end, 0))
    while end < length:
        new_end = min(length, end + step)
        windows.append(Window(max(0, new_end - size), new_end, end))
        end = new_end
    return windows


if __name__ == "__main__":
    for window in plan(length=10, size=4, step=3):
        scored = range(window.first_scored, window.end)
        print(f"{window.start:>2}..{window.end:<2} scores {list(scored)}")
