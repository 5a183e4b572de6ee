"""Shared terminal output: progress and logs on stderr, results on stdout.

Every message that carries user data (a path, a model name, an error from a
decoder) is printed with Rich markup off: a file called ``photo[1].png`` or
``scan[bold].tif`` must be named as it is, not eaten as a style tag (or, for a
``[/...]`` in a folder name, crash the run with a MarkupError).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Callable, NoReturn

import typer
from rich.console import Console
from rich.text import Text


class _Console(Console):
    """A console whose reader going away (``restore ... 2>&1 | head``) stops the run as a
    closed stdout does (:class:`OutputClosed`, exit status 141), where Rich would exit
    with status 1 and say nothing."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), self.file.fileno())  # nothing fails again at exit
        raise OutputClosed


err_console = _Console(stderr=True)


def table_console() -> Console:
    """A stdout console for tables: the terminal's width, or a wide one when piped."""
    console = _Console()
    return console if console.is_terminal else _Console(width=160)


def say(message: object) -> None:
    """Print ``message`` as plain text on stderr (no markup, no highlighting)."""
    err_console.print(str(message), markup=False, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """Print ``warning: message`` on one line of stderr."""
    err_console.print(Text.assemble(("warning:", "yellow"), " ", message), highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """Print ``error: message`` on one line of stderr."""
    err_console.print(Text.assemble(("error:", "red"), " ", message), highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with ``code``."""
    error(message)
    raise typer.Exit(code)


def os_cause(exc: OSError) -> str:
    """The reason an output path could not be written, in words: mkdir's "File exists" and
    "Not a directory" mean a folder on the path is a file."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return "a folder on this path is a file"
    return exc.strerror or str(exc)


def first_few(items, shown: int) -> str:
    """``a, b, c and 4 more``: the first ``shown`` of ``items`` named, the rest counted."""
    items = [str(item) for item in items]
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def cell(value: object) -> Text:
    """A table cell shown verbatim (model names and paths may contain brackets)."""
    return Text(str(value))


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


class OutputClosed(Exception):
    """stdout's (or stderr's) reader went away (``restore derain in/ out/ | head -3``): the
    run stops, as Unix tools stop on SIGPIPE, with exit status 141."""


OUTPUT_CLOSED_STATUS = 141  # 128 + SIGPIPE, what a shell reports for a tool its reader left


def emit(text: str) -> None:
    """Print one result line on stdout, flushed; :class:`OutputClosed` once its reader has
    gone (stdout then writes to /dev/null, so that nothing fails again at exit)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise OutputClosed from None


def print_json(value: Any, indent: int | None = None) -> None:
    """Print ``value`` as strict JSON on stdout: a number that is not finite (the PSNR
    of identical images, the noise level of a 1-pixel-high image) becomes null, since
    NaN and Infinity are not JSON and strict readers (jq, JavaScript) refuse them."""
    emit(json.dumps(_finite_or_null(value), indent=indent, allow_nan=False))


def duration_words(seconds: float) -> str:
    """``1 h 05 min``, ``12 min``, ``40 s``: a time left, for a log line."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


PROGRESS_LINE_SECONDS = 60.0  # without a terminal, a progress line this often


class ProgressLines:
    """Progress as a plain line every ``every`` seconds, for stderr without a terminal
    (a batch job's log, where the progress bar is off): an hours-long video, or a batch
    of thousands of images, would otherwise say nothing until it is done. Each key (a
    video, or the batch) is timed from its first call; ``unit`` names what is counted."""

    def __init__(self, unit: str = "frames", every: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.unit, self.clock = unit, clock
        self.every = PROGRESS_LINE_SECONDS if every is None else every
        self.started: dict[object, tuple[float, int]] = {}  # key -> (when, count) at its first call
        self.last: dict[object, float] = {}

    def __call__(self, key: object, count: int, total: int) -> str | None:
        now = self.clock()
        if key not in self.started:
            self.started[key] = (now, count)
            self.last[key] = now
            return None
        if now - self.last[key] < self.every:
            return None
        self.last[key] = now
        since, first = self.started[key]
        rate = (count - first) / max(now - since, 1e-9)
        line = f"{key}: {count}" + (f" of {total}" if total else "") + f" {self.unit}, {rate:.2f} {self.unit}/s"
        if total and rate > 0 and total > count:
            line += f", about {duration_words((total - count) / rate)} left"
        return line


class StepLines:
    """Training progress as a plain line for a log file (stderr without a terminal, where
    the progress bar is off): at every ``every_steps``-th step, and in between whenever
    ``every`` seconds have passed since the last line (a run of several seconds a step
    said nothing for the better part of an hour). The rate is measured from the first
    step this process trained, so a resumed run's rate is its own."""

    def __init__(self, every_steps: int = 250, every: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_steps, self.clock = every_steps, clock
        self.every = PROGRESS_LINE_SECONDS if every is None else every
        self.started: tuple[float, int] | None = None  # (when, step) of the first call
        self.last = 0.0

    def __call__(self, step: int, total: int, loss: float, lr: float) -> str | None:
        now = self.clock()
        if self.started is None:
            self.started, self.last = (now, step), now
        if step % self.every_steps and now - self.last < self.every:
            return None
        self.last = now
        line = f"step {step}/{total} loss {loss:.4f} lr {lr:.2g}"
        since, first = self.started
        if step > first:
            rate = (step - first) / max(now - since, 1e-9)
            line += f", {rate:.2f} steps/s, about {duration_words((total - step) / rate)} left"
        return line


def stdin_paths(quiet: bool) -> list[str]:
    """The paths on stdin, for IN ``-``. At a terminal (nothing piped in: a forgotten
    ``find ... |``) a line says first what the command waits for; without it, it seemed
    to hang."""
    from restore_core.engine.inputs import paths_from_stdin

    if sys.stdin.isatty() and not quiet:
        say("reading image paths from the terminal, one a line (IN is '-'); Ctrl-D ends the list")
    return paths_from_stdin(sys.stdin.buffer.read())
