"""boxlite wait: block until boxes stop, print their exit codes."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli


@click.command()
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_box)
@pass_cli
def wait(cli: CliContext, boxes: tuple[str, ...]) -> int:
    """Block until one or more boxes stop, then print their exit codes."""
    for ref in boxes:
        click.echo(cli.runtime.wait(ref))
    return 0
