"""boxlite logs: the output of a box's main process."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.fdio import write_all

STDERR = 1


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the box stops.")
@click.option("-n", "--tail", "tail", default="all", show_default=True,
              help="Number of lines to show from the end (or 'all').")
@click.argument("box", shell_complete=complete_box)
@pass_cli
def logs(cli: CliContext, follow: bool, tail: str, box: str) -> int:
    """Print what BOX's main process wrote (stdout to stdout, stderr to stderr).

    Kept for every start of the box, in the foreground or in the background.
    """
    last = None if tail == "all" else click.IntRange(min=0).convert(tail, None, None)
    for stream, data in cli.runtime.logs(box, follow=follow, tail=last):
        if not write_all(2 if stream == STDERR else 1, data):
            break  # the reader went away (`logs -f | head`): so do we
    return 0
