"""boxlite stop: stop running boxes gracefully."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import each_box
from boxlite_cli.cli.options import stop_time_option


@click.command()
@stop_time_option
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_box)
@pass_cli
def stop(cli: CliContext, timeout: float, boxes: tuple[str, ...]) -> int:
    """Stop one or more boxes: SIGTERM to the main process, SIGKILL after the grace time."""
    return each_box(boxes, lambda ref: cli.runtime.stop(ref, timeout))
