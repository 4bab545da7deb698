"""The command line: Typer wiring, option groups and the console. The only code that prints or exits."""

from .app import app, main

__all__ = ["app", "main"]
