"""boxlite prune: remove all stopped boxes."""

from __future__ import annotations

import click

from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import confirmed, echo_pruned


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def prune(cli: CliContext, force: bool) -> int:
    """Remove every box that is not running, with its disks."""
    if not force and not confirmed("Remove all stopped boxes?"):
        return 0
    pruned = cli.runtime.prune()
    echo_pruned([("Deleted boxes", pruned.removed)], pruned.freed)  # (docker's)
    return 0
