"""boxlite start: boot stopped boxes; their main process runs in the background."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_stopped_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import each_box, report
from boxlite_cli.cli.options import cold_option
from boxlite_cli.errors import AlreadyRunning, UsageError
from boxlite_cli.runtime.runtime import Runtime, StartResult


@click.command()
@cold_option
@click.option("--checkpoint", metavar="NAME",
              help="Resume from this memory checkpoint (snapshot create --memory): its "
                   "processes carry on where they were, on the disk as it was then (what "
                   "the box wrote after the checkpoint is gone).")
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_stopped_box)
@pass_cli
def start(cli: CliContext, cold: bool, checkpoint: str | None, boxes: tuple[str, ...]) -> int:
    """Start one or more created or exited boxes."""
    if cold and checkpoint is not None:
        raise UsageError("--cold and --checkpoint exclude each other: a checkpoint resumes "
                         "its own memory, never a warm-start template")
    return each_box(boxes, lambda ref: start_one(cli.runtime, ref, cold, checkpoint))


def start_one(runtime: Runtime, ref: str, cold: bool, checkpoint: str | None) -> int | None:
    """Start one box; one that runs already is left as it is, a success (docker's
    way), unless a checkpoint was asked for: that would replace what runs."""
    try:
        return started(runtime.start(ref, cold=cold, checkpoint=checkpoint))
    except AlreadyRunning:
        if checkpoint is not None:
            raise
        return None


def started(result: StartResult) -> int | None:
    """None when the main process runs; else report why not and return its code."""
    if result.exit_code is None:
        return None
    report(result.error or "the command could not be started")
    return result.exit_code
