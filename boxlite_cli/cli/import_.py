"""boxlite import: a new box from an archive written by `boxlite export`."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import click

from boxlite_cli.cli.context import CliContext, pass_cli, warn
from boxlite_cli.cli.errors import ending_on_signals
from boxlite_cli.errors import UsageError
from boxlite_cli.fdio import FdReader


@click.command("import")
@click.option("--name", metavar="NAME", help="Name of the new box (default: a random one).")
@click.argument("file", type=click.Path(path_type=Path))
@pass_cli
def import_(cli: CliContext, name: str | None, file: Path) -> int:
    """Create a box from FILE, an archive written by `boxlite export` (- for stdin).

    The archive is untrusted input: its members, manifest, sizes and checksums, and its
    disk (a standalone qcow2: no backing or external data file; `qemu-img check`) are
    all verified before the box appears. The new box is created, not started; its id
    is printed. Published ports bind 127.0.0.1; volumes are not part of an archive.
    """
    from boxlite_cli.runtime.export import import_box

    if str(file) == "-":
        if sys.stdin.isatty():
            raise UsageError("requested import from standard input, but it is a terminal",
                             hint="pass the archive as FILE, or pipe it in")
        with ending_on_signals():  # (a SIGTERM leaves nothing half-made, as Ctrl-C)
            state = import_box(cli.runtime, io.BufferedReader(FdReader(0)), "standard input",
                               name, warn=warn)
    else:
        try:
            f = open(file, "rb")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise UsageError(f"cannot read {file}: {e.strerror}") from None
        with f, ending_on_signals():
            state = import_box(cli.runtime, f, str(file), name, warn=warn)
    click.echo(state.id)
    return 0
