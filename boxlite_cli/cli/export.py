"""boxlite export: a box (config and flattened disk) as one archive."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli, warn
from boxlite_cli.cli.errors import ending_on_signals
from boxlite_cli.errors import UsageError


@click.command()
@click.option("-o", "--output", default="-", metavar="FILE", type=click.Path(),
              help="The archive to write (tar + zstd) [default: standard output, which "
                   "must not be a terminal, as docker's].")
@click.option("--force", is_flag=True, help="Replace FILE if it exists (refused otherwise).")
@click.argument("box", shell_complete=complete_box)
@pass_cli
def export(cli: CliContext, output: str, force: bool, box: str) -> int:
    """Write BOX (running or stopped) as an archive to import elsewhere.

    The archive holds a manifest (the box's config, name, image, and the SHA-256 of
    every disk) and the box's disk flattened into one standalone qcow2, so it works on
    a host without the image. A running box is quiesced for an instant while its
    disk is copied (the copy is removed afterwards). Volumes (-v) are not exported. An
    existing FILE is refused unless --force; a failed export leaves no partial file.
    """
    from boxlite_cli.runtime.export import export_box

    if output in ("", "-"):  # (an empty -o is standard output too, as docker's)
        if os.isatty(1):
            raise UsageError("refusing to write the archive to a terminal",
                             hint="redirect standard output, or use -o FILE")
        sys.stdout.flush()
        with ending_on_signals():  # (a SIGTERM takes back what was made, as Ctrl-C)
            export_box(cli.runtime, box, 1, warn=warn)
        return 0
    with ending_on_signals():
        # (quiet, as docker's)
        export_box(cli.runtime, box, Path(output), force=force, warn=warn)
    return 0
