"""boxlite wait: block until boxes stop, print their exit codes."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import report
from boxlite_cli.errors import BoxliteError


@click.command()
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_box)
@pass_cli
def wait(cli: CliContext, boxes: tuple[str, ...]) -> int:
    """Block until one or more boxes stop, then print their exit codes.

    Each box is waited for in turn, its code printed when it stops; one that cannot be
    (no such box) is said on stderr and the rest are still waited for, as docker's; the
    exit code is then the last failure's."""
    code = 0
    for ref in boxes:
        try:
            click.echo(cli.runtime.wait(ref))
        except BoxliteError as e:
            report(e.message, e.hint)
            code = e.exit_code
    return code
