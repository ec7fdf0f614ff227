"""boxlite rm: remove boxes."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import each_box


@click.command()
@click.option("-f", "--force", is_flag=True,
              help="Stop running boxes first (SIGKILL); a box that does not exist is passed over.")
@click.option("-v", "--volumes", is_flag=True, help="Remove the boxes' anonymous volumes too.")
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_box)
@pass_cli
def rm(cli: CliContext, force: bool, volumes: bool, boxes: tuple[str, ...]) -> int:
    """Remove one or more boxes and their disks.

    A box whose clones are given too goes after them (they are built on its disk).
    """
    from boxlite_cli.runtime.clone import removal_order

    return each_box(tuple(removal_order(cli.runtime, boxes)),
                    lambda ref: cli.runtime.remove(ref, force=force, volumes=volumes),
                    missing_is_done=force)
