"""Shared terminal output: progress and logs on stderr, results on stdout."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

err_console = Console(stderr=True)


def table_console() -> Console:
    """A stdout console for tables: the terminal's width, or a wide one when piped."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with ``code``."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
