"""boxlite rename: give a box a new name."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli


@click.command()
@click.argument("box", shell_complete=complete_box)
@click.argument("new_name")
@pass_cli
def rename(cli: CliContext, box: str, new_name: str) -> int:
    """Rename BOX to NEW_NAME (names are unique)."""
    cli.runtime.rename(box, new_name)
    return 0
