"""boxlite prune: remove all stopped boxes."""

from __future__ import annotations

import click

from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import confirmed, human_size


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def prune(cli: CliContext, force: bool) -> int:
    """Remove every box that is not running, with its disks."""
    if not force and not confirmed("Remove all stopped boxes?"):
        return 0
    pruned = cli.runtime.prune()
    for box_id in pruned.removed:
        click.echo(box_id)
    count = len(pruned.removed)
    click.echo(f"Removed {count} box{'es' if count != 1 else ''}; "
               f"total reclaimed space: {human_size(pruned.freed)}", err=True)
    return 0
