"""The ``restore`` Typer app: one sub-command per job, all over restore_core."""

from __future__ import annotations

import typer

from cli.attribute_cmd import attribute_filters
from cli.benchmark_cmd import benchmark
from cli.convert_cmd import convert
from cli.models_cmd import models
from cli.restore_cmd import make_restore_command
from cli.train_cmd import train

app = typer.Typer(
    name="restore",
    help="Deep-learning image restoration for folders of photos: derain, deblur, denoise, dehaze or detect (auto); train and benchmark models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"restore {version('restore')}")
        except PackageNotFoundError:
            print("restore (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Deep-learning image restoration for folders of photos."""


app.command("derain")(make_restore_command("derain", "Remove rain streaks from"))
app.command("deblur")(make_restore_command("deblur", "Remove motion blur from"))
app.command("denoise")(make_restore_command("denoise", "Remove noise from"))
app.command("dehaze")(make_restore_command("dehaze", "Remove haze from"))
app.command("auto")(make_restore_command("auto", "Detect the degradation of each image (rain, blur, noise, haze) and restore"))
app.command("train")(train)
app.command("models")(models)
app.command("benchmark")(benchmark)
app.command("convert")(convert)
app.command("attribute-filters")(attribute_filters)


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        # stdout closed early (e.g. `restore derain ... | head`): exit quietly like other Unix tools.
        import os
        import sys

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)


if __name__ == "__main__":
    main()
