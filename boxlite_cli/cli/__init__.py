"""The boxlite command line: click commands, one module per command or group."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys

import click
from click.utils import PacifyFlushWrapper

from boxlite_cli.cli.errors import exit_code_for

SIGPIPE_EXIT = 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: runs the command, maps every error to an exit code."""
    args = sys.argv[1:] if argv is None else argv
    # (boxlite's own --debug: before the command; `run IMG grep --debug` is the box's)
    debug = ("--debug" in itertools.takewhile(lambda a: a.startswith("-"), args)
             or os.environ.get("BOXLITE_DEBUG") == "1")
    try:
        from boxlite_cli.cli.app import cli  # (inside: a Ctrl-C here is quiet too)

        rv = cli.main(args=args, prog_name="boxlite", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.exceptions.Abort:
        return 130
    except BaseException as e:  # mapped to one line + exit code in one place
        if isinstance(e, SystemExit):
            if isinstance(sys.stdout, PacifyFlushWrapper):  # (click's, on EPIPE)
                return SIGPIPE_EXIT  # the reader went away: a host tool's status
            return int(e.code or 0) if not isinstance(e.code, str) else 1
        code = exit_code_for(e, debug)
        _flush()
        return code
    _flush()
    return rv if isinstance(rv, int) else 0


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
