"""The `boxlite` console script: for a command that starts a box, a shim is started
first (shim/prestart.py), so that its Python start-up overlaps the CLI's; then the CLI."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from pathlib import Path

# The commands that start a box (a guess from the first word that is not an option: a
# wrong one costs an idle process that exits with us).
BOX_STARTING_COMMANDS = frozenset({"run", "start", "restart"})


def wants_prestart(args: list[str]) -> bool:
    """A guess without parsing: a box-starting command, and no -h/--help of boxlite's
    (one after the command's first argument is the box command's, as in `run IMAGE ls
    -h`, or an option value's: then an unused shim exits with us)."""
    if os.environ.get("BOXLITE_PRESTART") == "0":
        return False
    words = [i for i, arg in enumerate(args) if not arg.startswith("-")]
    if not words or args[words[0]] not in BOX_STARTING_COMMANDS:
        return False
    ours = args[:words[1]] if len(words) > 1 else args
    # (-h of run is --hostname, as docker's; of boxlite itself and start, help)
    if "--help" in ours or "-h" in (ours if args[words[0]] != "run" else args[:words[0]]):
        return False
    # A `run` that will likely take a spare VM needs no shim of its own: one importing
    # meanwhile would only take CPU from the spare's guest (a wrong guess costs the
    # usual shim start, ~0.1 s).
    return not (args[words[0]] == "run" and spare_ready())


def spare_ready() -> bool:
    """A spare VM waits in this home (runtime/spares.py), ready to be taken."""
    from boxlite_cli.shim.spareclaim import adopt_socket
    from boxlite_cli.state.paths import home_paths

    try:
        with os.scandir(home_paths().data / "spares") as entries:
            return any(entry.is_dir() and adopt_socket(Path(entry.path)).exists()
                       for entry in entries)
    except OSError:
        return False


def open_standard_fds() -> None:
    """A closed stdin, stdout or stderr (`>&-`) becomes /dev/null, before anything
    opens a file that would take its number and get what is meant for the terminal."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # (the lowest free number: fd itself)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    # (Python gave up on them at start-up: None)
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def main() -> int:
    open_standard_fds()
    try:
        if wants_prestart(sys.argv[1:]):
            from boxlite_cli.shim import prestart

            with contextlib.suppress(OSError):  # (then the shim is started the usual way)
                prestart.begin()
        from boxlite_cli.cli import main as cli_main
    except KeyboardInterrupt:  # Ctrl-C while importing: quiet, as during a command
        return 130
    code = cli_main()
    # The interpreter's final collection would walk every object the imports made
    # (~20 ms here, after the command is done); nothing of ours waits for it.
    gc.freeze()
    return code
