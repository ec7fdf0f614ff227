"""boxlite logs: the output of a box's main process (detached boxes)."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.runtime.session import write_all

STDERR = 1


@click.command()
@click.argument("box", shell_complete=complete_box)
@pass_cli
def logs(cli: CliContext, box: str) -> int:
    """Print what BOX's main process wrote (stdout to stdout, stderr to stderr)."""
    for stream, data in cli.runtime.logs(box):
        write_all(2 if stream == STDERR else 1, data)
    return 0
