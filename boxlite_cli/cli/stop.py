"""boxlite stop: stop running boxes gracefully."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_running_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import each_box
from boxlite_cli.cli.options import stop_time_option
from boxlite_cli.runtime.signals import parse_signal


@click.command()
@stop_time_option
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_running_box)
@pass_cli
def stop(cli: CliContext, timeout: float | None, stop_signal: str | None,
         boxes: tuple[str, ...]) -> int:
    """Stop one or more boxes: the stop signal (SIGTERM unless the image or --stop-signal
    says otherwise) to the main process, SIGKILL after the grace time."""
    signum = parse_signal(stop_signal) if stop_signal is not None else None
    return each_box(boxes, lambda ref: cli.runtime.stop(ref, timeout, signum=signum),
                    parallel=True)
