"""boxlite start: boot stopped boxes; their main process runs in the background."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_checkpoint, complete_stopped_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import each_box, report
from boxlite_cli.cli.options import check_tty_input, cold_option, detach_keys_option
from boxlite_cli.cli.output import std_fds
from boxlite_cli.cli.run import attach_started, merges_output
from boxlite_cli.errors import AlreadyRunning, UsageError
from boxlite_cli.runtime.runtime import Runtime, StartResult
from boxlite_cli.runtime.terminal import ENDING_SIGNALS, StartSignals, forwarding_signals


@click.command()
@cold_option
@click.option("--checkpoint", metavar="NAME", shell_complete=complete_checkpoint,
              help="Resume from this memory checkpoint (snapshot create --memory): its "
                   "processes carry on where they were, on the disk as it was then (what "
                   "the box wrote after the checkpoint is gone).")
@click.option("-a", "--attach", is_flag=True,
              help="Stay attached, as run does: the main process's output here (its input "
                   "too with -i), signals passed on, its exit code as ours (a box that runs "
                   "already: attached to, from now on). One box only.")
@click.option("-i", "--interactive", is_flag=True,
              help="Attach this terminal's input too (implies -a; a box created with -i). "
                   "Ctrl-P Ctrl-Q (or --detach-keys) detaches from a tty box, which runs on.")
@detach_keys_option
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_stopped_box)
@pass_cli
def start(cli: CliContext, cold: bool, checkpoint: str | None, attach: bool, interactive: bool,
          detach_keys: str, boxes: tuple[str, ...]) -> int:
    """Start one or more created or exited boxes."""
    from boxlite_cli.runtime.detachkeys import parse_detach_keys

    keys = parse_detach_keys(detach_keys)
    if cold and checkpoint is not None:
        raise UsageError("--cold and --checkpoint exclude each other: a checkpoint resumes "
                         "its own memory, never a warm-start template")
    if attach or interactive:
        if len(boxes) != 1:
            raise UsageError("start -a and -i take one box")
        return start_attached(cli.runtime, boxes[0], cold, checkpoint, interactive, keys)
    return each_box(boxes, lambda ref: start_one(cli.runtime, ref, cold, checkpoint))


def start_attached(rt: Runtime, ref: str, cold: bool, checkpoint: str | None,
                   interactive: bool, detach_keys: bytes) -> int:
    """start -a: as a foreground run of the box's own process; a box that runs already
    is attached to, as docker's."""
    state = rt.get(ref)
    process = state.config.process
    interactive = interactive and process.stdin
    check_tty_input(interactive, process.tty, detach=False)
    # (a checkpoint's process is attached to over gRPC, as run --from does)
    output = None if interactive or process.tty or checkpoint is not None else std_fds()
    signals = StartSignals()  # (SIGTERM, SIGHUP: as run's)
    try:
        with forwarding_signals(signals, ENDING_SIGNALS):
            result = rt.start(state.id, foreground=True, cold=cold, checkpoint=checkpoint,
                              output=output, exit_report=True,
                              merge_stderr=merges_output(state.config.auto_remove, process.tty))
            signals.running = True
    except AlreadyRunning:
        if checkpoint is not None:  # (it would replace what runs)
            raise
        from boxlite_cli.runtime.attach import attach

        return attach(rt, state.id, stdin=interactive, detach_keys=detach_keys)  # (docker's)
    return attach_started(rt, state.id, result, signals.held, output, interactive, process.tty,
                          detach_keys)


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
