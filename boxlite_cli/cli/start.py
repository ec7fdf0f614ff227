"""boxlite start: boot stopped boxes; their main process runs in the background."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import report
from boxlite_cli.errors import BoxliteError


@click.command()
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_box)
@pass_cli
def start(cli: CliContext, boxes: tuple[str, ...]) -> int:
    """Start one or more created or exited boxes."""
    failed = 0
    for ref in boxes:
        try:
            result = cli.runtime.start(ref)
        except BoxliteError as e:  # keep going with the other boxes, like docker
            report(e.message, e.hint)
            failed = 125
            continue
        if result.exit_code is not None:
            report(result.error or "the command could not be started")
            failed = result.exit_code
            continue
        click.echo(ref)
    return failed
