"""boxlite restart: stop and start boxes."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import report
from boxlite_cli.errors import BoxliteError


@click.command()
@click.option("-t", "--time", "timeout", type=click.FloatRange(min=0), default=10,
              show_default=True, help="Seconds to wait after SIGTERM before SIGKILL.")
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_box)
@pass_cli
def restart(cli: CliContext, timeout: float, boxes: tuple[str, ...]) -> int:
    """Restart one or more boxes (their disks are kept)."""
    code = 0
    for ref in boxes:
        try:
            cli.runtime.stop(ref, timeout)
            result = cli.runtime.start(ref)
            if result.exit_code is not None:
                report(result.error or "the command could not be started")
                code = result.exit_code
                continue
            click.echo(ref)
        except BoxliteError as e:
            report(e.message, e.hint)
            code = e.exit_code
    return code
