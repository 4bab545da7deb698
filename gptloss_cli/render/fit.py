"""Tables whose first column holds names (file names, dataset sources) that must stay on one line."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table

MIN_NAME = 12  # a name is never cut shorter than this


class FitNames:
    """Renders build(None); when that is wider than the console, build(width) with the names cut in
    the middle to `width` characters (sample_te…/inventory.txt), so no name breaks over two lines."""

    def __init__(self, build: Callable[[int | None], Table], longest: int) -> None:
        self.build = build
        self.longest = longest

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = self.build(None)
        width = Measurement.get(console, options.update_width(10**4), table).maximum  # unclamped
        if width > options.max_width and self.longest > MIN_NAME:
            table = self.build(max(MIN_NAME, self.longest - (width - options.max_width)))
        yield table
