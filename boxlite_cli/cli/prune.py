"""boxlite prune: remove all stopped boxes."""

from __future__ import annotations

import click

from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import confirmed


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def prune(cli: CliContext, force: bool) -> int:
    """Remove every box that is not running, with its disks."""
    if not force and not confirmed("Remove all stopped boxes?"):
        return 0
    removed = cli.runtime.prune()
    for box_id in removed:
        click.echo(box_id)
    click.echo(f"Removed {len(removed)} box{'es' if len(removed) != 1 else ''}", err=True)
    return 0
