"""Which options the user gave a command, as opposed to their defaults: an option that
does not apply to what was asked is refused (or said) when given, whatever its value,
and never because its default changed."""

from __future__ import annotations

import typer


def given_options(ctx: typer.Context) -> list[str]:
    """The long flags (``--temporal-strength``) of the options on ``ctx``'s command line,
    in the command's order of options; arguments and defaults are not among them."""
    flags = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if source is not None and source.name == "COMMANDLINE" and any(opt.startswith("-") for opt in param.opts):
            flags.append(max(param.opts, key=len))
    return flags
