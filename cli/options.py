"""Which options the user gave a command, as opposed to their defaults: an option that
does not apply to what was asked is refused (or said) when given, whatever its value,
and never because its default changed; and an option of another command, named as such."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import typer
from typer.core import TyperCommand


def given_options(ctx: typer.Context) -> list[str]:
    """The long flags (``--temporal-strength``) of the options on ``ctx``'s command line,
    in the command's order of options; arguments and defaults are not among them."""
    flags = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if source is not None and source.name == "COMMANDLINE" and any(opt.startswith("-") for opt in param.opts):
            flags.append(max(param.opts, key=len))
    return flags


_BINARY_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_memory_size(text: str) -> int:
    """Bytes from ``4G``, ``512M``, ``1.5GiB``, ``2048MB`` or a plain number of bytes:
    binary units, as ``docker --memory`` and ``ulimit`` read them (1G = 1024^3 bytes).
    A ValueError says what was wrong, a size under a megabyte among them (a unit left out)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?b)?\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"expected a size such as 4G, 512M or 1.5GiB, got {text!r}")
    size = float(match.group(1)) * _BINARY_UNITS[match.group(2).upper()]
    if size < 2**20:  # no image restores in less; most likely a unit left out
        raise ValueError(f"{text.strip()!r} is less than a megabyte; give a unit, e.g. {match.group(1)}M or {match.group(1)}G")
    return int(size)


def parse_clock(text: str) -> float:
    """Seconds from ``90``, ``90.5``, ``1:30`` (M:SS) or ``1:02:03.5`` (H:MM:SS); a
    ValueError says what was wrong."""
    parts = text.strip().split(":")
    try:
        if not 1 <= len(parts) <= 3 or any(not part for part in parts):
            raise ValueError
        values = [float(part) for part in parts]
    except ValueError:
        raise ValueError("expected seconds (90, 12.5) or M:SS / H:MM:SS (1:30, 1:02:03.5)") from None
    if any(value < 0 for value in values) or any(value >= 60 for value in values[1:]):
        raise ValueError("minutes and seconds after a colon are 0-59, and no part is negative")
    seconds = 0.0
    for value in values:
        seconds = seconds * 60 + value
    return seconds


_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PIECE = r"(\d+(?:\.\d*)?|\.\d+)\s*([dhms])"


def parse_duration(text: str) -> float:
    """Seconds from ``45m``, ``2h``, ``1h30m``, ``1.5h``, ``90s``, ``1d`` or ``H:MM:SS`` /
    ``M:SS`` (:func:`parse_clock`). A bare number is refused, since schedulers read it as
    minutes and most programs as seconds: a ValueError says so, as it says any other fault."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d*)?", text):
        raise ValueError(f"{text!r} has no unit; say {text}m for minutes or {text}s for seconds (or H:MM:SS)")
    if ":" in text:
        seconds = parse_clock(text)
    else:
        pieces = re.findall(_DURATION_PIECE, text)
        if not pieces or re.sub(_DURATION_PIECE, "", text).strip():
            raise ValueError(f"expected a duration such as 45m, 2h, 1h30m or 1:30:00, got {text!r}")
        seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in pieces)
    if seconds <= 0:
        raise ValueError(f"{text!r} is no time at all")
    return seconds


def _takes_a_path(param) -> bool:
    """Whether ``param`` is an argument (IN, OUT, ...) or an option of a path type."""
    if param.param_type_name == "argument":
        return True
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return annotation is Path or Path in typing.get_args(annotation)


class Command(TyperCommand):
    """A command whose unknown option is named as another command's where it is one
    (`restore denoise --iterations`: "an option of restore deblur"), in place of Click's
    spelling guesses among this command's own (it offered --duration for --iterations);
    and that refuses an empty path, which Python reads as the current folder: `restore
    derain in/ "$OUT"` with OUT unset wrote into the folder the job ran in."""

    def parse_args(self, ctx, args):
        raw = list(args)
        try:
            rest = super().parse_args(ctx, args)
        except Exception as exc:  # Click's NoSuchOption: typer >= 0.29 vendors Click, so matched by its fields
            name = getattr(exc, "option_name", None)
            siblings = getattr(ctx.parent.command, "commands", {}) if ctx.parent is not None else {}
            owners = [command for command, sibling in siblings.items() if any(name in param.opts for param in sibling.params)]
            if name and owners and hasattr(exc, "possibilities"):
                exc.possibilities = None
                exc.message = f"No such option: {name} (an option of {', '.join('restore ' + owner for owner in owners)})"
            self._name_the_missing_output(ctx, exc, raw)
            raise
        self._refuse_empty_paths(ctx, raw)  # once parsed: --help and the like have exited
        return rest

    def _name_the_missing_output(self, ctx, exc: Exception, args: list[str]) -> None:
        """`restore denoise photo.jpg`: Click fills the last argument (OUT) first and calls
        the inputs (IN...) missing, which the user did give. Said as it is: OUT is missing."""
        missing = getattr(exc, "param", None)
        if missing is None or getattr(missing, "param_type_name", None) != "argument" or missing.nargs != -1:
            return
        arguments = [param for param in self.get_params(ctx) if param.param_type_name == "argument"]
        following = arguments[arguments.index(missing) + 1:] if missing in arguments else []
        try:
            given, _, _ = self.make_parser(ctx).parse_args(args=list(args))
        except Exception:  # noqa: BLE001 - a malformed command line: Click's own message stands
            return
        if len(following) == 1 and given.get(following[0].name) not in (None, ""):
            out = following[0]
            exc.param, exc.param_hint = out, f"'{out.metavar or out.name.upper()}'"
            exc.message = f"The output comes last, after the inputs: restore {ctx.info_name} {given[out.name]} out/"

    def _refuse_empty_paths(self, ctx, args: list[str]) -> None:
        if ctx.resilient_parsing:  # Tab completion
            return
        try:  # the raw values, before Path("") becomes Path(".")
            given, _, _ = self.make_parser(ctx).parse_args(args=list(args))
        except Exception:  # noqa: BLE001 - a malformed command line: the real parse says how
            return
        for param in self.get_params(ctx):
            value = given.get(param.name)
            if _takes_a_path(param) and "" in (value if isinstance(value, (list, tuple)) else [value]):
                raise typer.BadParameter("an empty path (an unset shell variable?); '.' names the current folder", ctx=ctx, param=param)
