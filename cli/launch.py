"""The ``restore`` console script's entry: Ctrl-C while the command line is still being
imported (its first 0.2 s) exits with status 130 and no word, as it does once running,
instead of a traceback through the import machinery."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from cli.main import main as run
    except KeyboardInterrupt:
        sys.exit(130)
    run()
