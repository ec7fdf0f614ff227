"""boxlite pause / unpause: stop a running box's VM where it is, and continue it."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_paused_box, complete_unpaused_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import each_box


@click.command()
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_unpaused_box)
@pass_cli
def pause(cli: CliContext, boxes: tuple[str, ...]) -> int:
    """Pause every process of one or more running boxes (their VMs stop where they are).

    A paused box keeps its memory and uses no CPU. exec, cp, top, snapshots, export and
    clone are refused until `boxlite unpause`; stop, restart, kill -s KILL and rm -f work
    on it.
    """
    return each_box(boxes, cli.runtime.pause)


@click.command()
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_paused_box)
@pass_cli
def unpause(cli: CliContext, boxes: tuple[str, ...]) -> int:
    """Continue the processes of one or more paused boxes (the guest clock is set again)."""
    return each_box(boxes, cli.runtime.unpause)
