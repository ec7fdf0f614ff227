"""boxlite restart: stop and start boxes."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import each_box
from boxlite_cli.cli.options import stop_time_option
from boxlite_cli.cli.start import started
from boxlite_cli.runtime.signals import parse_signal


@click.command()
@stop_time_option
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_box)
@pass_cli
def restart(cli: CliContext, timeout: float | None, stop_signal: str | None,
            boxes: tuple[str, ...]) -> int:
    """Restart one or more boxes (their disks are kept)."""
    signum = parse_signal(stop_signal) if stop_signal is not None else None

    def restart_one(ref: str) -> int | None:
        return started(cli.runtime.restart(ref, timeout, signum))

    return each_box(boxes, restart_one)
