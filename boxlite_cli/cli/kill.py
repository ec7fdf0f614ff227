"""boxlite kill: send a signal to boxes' main processes."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_running_box, complete_signal
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import each_box
from boxlite_cli.runtime.signals import parse_signal


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True,
              shell_complete=complete_signal, help="Signal to send (name or number).")
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_running_box)
@pass_cli
def kill(cli: CliContext, sig: str, boxes: tuple[str, ...]) -> int:
    """Send a signal to the main process of one or more running boxes (with KILL, the
    default, it returns once each box has stopped, as docker's kill)."""
    signum = parse_signal(sig)
    return each_box(boxes, lambda ref: cli.runtime.kill(ref, signum))
