"""The `boxlite` console script: for a command that starts a box, a shim is started
first (shim/prestart.py), so that its Python start-up overlaps the CLI's; then the CLI."""

from __future__ import annotations

import contextlib
import os
import sys

# The commands that start a box (a guess from the first word that is not an option: a
# wrong one costs an idle process that exits with us).
BOX_STARTING_COMMANDS = frozenset({"run", "start", "restart"})


def wants_prestart(args: list[str]) -> bool:
    if os.environ.get("BOXLITE_PRESTART") == "0" or "--help" in args or "-h" in args:
        return False
    command = next((arg for arg in args if not arg.startswith("-")), None)
    return command in BOX_STARTING_COMMANDS


def main() -> int:
    if wants_prestart(sys.argv[1:]):
        from boxlite_cli.shim import prestart

        with contextlib.suppress(OSError):  # (then the shim is started the usual way)
            prestart.begin()
    from boxlite_cli.cli import main as cli_main

    return cli_main()
