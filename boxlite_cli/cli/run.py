"""boxlite run: create a box, start it, and run its main process in the foreground."""

from __future__ import annotations

import contextlib
from typing import Any

import click

from boxlite_cli.cli.boxspec import create_options
from boxlite_cli.cli.completion import (
    BoxCommandLine,
    complete_box_checkpoint,
    complete_image,
)
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import report
from boxlite_cli.cli.options import (
    box_options,
    check_tty_input,
    cidfile,
    cold_option,
    detach_keys_option,
    health_options,
    network_options,
    process_options,
)
from boxlite_cli.cli.output import one_output_file, std_fds
from boxlite_cli.errors import BoxliteError, UsageError
from boxlite_cli.runtime.runtime import Runtime, StartResult
from boxlite_cli.runtime.terminal import ENDING_SIGNALS, StartSignals, forwarding_signals


# (-h is --hostname here, as in docker run and create: help is --help alone)
@click.command(cls=BoxCommandLine, context_settings={"allow_interspersed_args": False,
                                                   "help_option_names": ["--help"]})
@box_options
@process_options
@network_options
@health_options
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the box id.")
@cold_option
@detach_keys_option
@click.option("--sig-proxy/--no-sig-proxy", default=True, show_default=True,
              help="Forward the signals this command gets (SIGINT, SIGTERM, Ctrl-Z...) "
                   "to the main process (Ctrl-Z reaches its SIGTSTP handler, but stops "
                   "nothing: a box has no job control, as docker's); with a tty, "
                   "SIGTERM and SIGHUP (keys go through it), this command ending 3 s "
                   "later if the process ignores them. "
                   "--no-sig-proxy (docker's --sig-proxy=false): they end this "
                   "command and the box runs on.")
@click.option("--from", "from_", metavar="BOX:NAME", shell_complete=complete_box_checkpoint,
              help="Make the box from memory checkpoint NAME of BOX and resume it: its "
                   "processes carry on (no IMAGE or COMMAND then).")
@click.argument("image", required=False, shell_complete=complete_image)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def run(cli: CliContext, /, image: str | None, command: tuple[str, ...], detach: bool, cold: bool,
        detach_keys: str, from_: str | None, cidfile_path: str | None, sig_proxy: bool,
        **options: Any) -> int:
    """Run a command in a new box.

    IMAGE is an image reference (the built-in one is localhost/debian:bookworm);
    COMMAND overrides the image's CMD. Exits with the command's exit code, 125 when
    boxlite itself failed, 126 when the command cannot be executed, 127 when it is
    not found, 128+N when it was killed by signal N. With -it, Ctrl-P Ctrl-Q (or
    --detach-keys) detaches (exit 0): the box runs on (boxlite attach joins it again).
    """
    from boxlite_cli.runtime.detachkeys import parse_detach_keys

    keys = parse_detach_keys(detach_keys)
    rt = cli.runtime
    interactive, tty, auto_remove = options["interactive"], options["tty"], options["auto_remove"]
    if from_ is not None:
        if image is not None or command:
            raise UsageError("--from takes no IMAGE or COMMAND: the box resumes the "
                             "checkpoint's processes")
        refuse_with_from(click.get_current_context())
        return _run_from(cli, from_, options["name"], detach, interactive, tty, auto_remove,
                         options["publish"], keys)
    if image is None:
        raise UsageError("missing IMAGE", hint="see 'boxlite run --help'")
    check_tty_input(interactive, tty, detach)
    opts = create_options(image, command, detach, options)
    with cidfile(cidfile_path) as write_cid:
        state = rt.create(opts)
        write_cid(state.id)
    # A plain foreground run: the shim writes the output to our stdout and stderr
    # itself (no gRPC in this process); -i and -t need a session.
    output = None if detach or interactive or tty else std_fds()
    # SIGTERM and SIGHUP while it starts end the start, as Ctrl-C does (the command
    # never runs); once it runs they are for the process (with -d, there is none)
    signals = StartSignals(proxy=sig_proxy)  # (--no-sig-proxy: none goes to it, tty or not)
    try:
        with forwarding_signals(signals, ENDING_SIGNALS):
            result = rt.start(state.id, foreground=not detach, cold=cold, output=output,
                              exit_report=True, merge_stderr=merges_output(auto_remove, tty))
            signals.running = not detach
    except BaseException:
        if auto_remove:  # (an interrupted start stopped the box: Runtime.start)
            with contextlib.suppress(BoxliteError):
                rt.remove(state.id, force=True, volumes=True)  # (--rm's: docker's)
        raise
    if detach and result.exit_code is None:
        try:
            click.echo(state.id)
        except OSError as e:  # (a script that cannot learn the id could not remove it)
            with contextlib.suppress(BoxliteError):
                rt.remove(state.id, force=True, volumes=True)
            raise BoxliteError(f"cannot write the box's id to standard output: {e.strerror}; "
                             "the box was removed") from e
        return 0
    return attach_started(rt, state.id, result, signals.held, output, interactive, tty, keys,
                          sig_proxy=sig_proxy)


def merges_output(auto_remove: bool, tty: bool) -> bool:
    """Whether the main process gets one pipe for stdout and stderr, so their order is
    kept: when ours are one file and the box's log goes with it (--rm). A kept box's
    log keeps the two streams apart instead, as docker's does (`logs 2>/dev/null`)."""
    return auto_remove and not tty and one_output_file()


def attach_started(rt: Runtime, box_id: str, result: StartResult, held: list[int],
                   output: tuple[int, int] | None, interactive: bool, tty: bool,
                   detach_keys: bytes, sig_proxy: bool = True) -> int:
    """After a foreground start (run, start -a): the signals `held` since it ran go to
    the process, then its output until it ends; the exit code is its own."""
    if result.exit_code is not None:
        report(result.error or "the command could not be started")
        return result.exit_code
    for signum in dict.fromkeys(held):
        with contextlib.suppress(BoxliteError):  # (it may have ended already)
            rt.kill(box_id, signum)
    if output is not None and result.exit_pipe is not None:
        from boxlite_cli.runtime.foreground import wait_direct

        return wait_direct(rt, box_id, result, sig_proxy=sig_proxy)
    # gRPC is imported only now, once the box runs (the shim is up).
    from boxlite_cli.runtime.foreground import attach_main

    return attach_main(rt, box_id, interactive, tty, started=result, detach_keys=detach_keys,
                       sig_proxy=sig_proxy)


# What `run --from` takes: the new box's name, its removal, its published ports and how
# the CLI attaches. The rest is the checkpoint's: its VM, disk, processes and network.
FROM_OPTIONS = frozenset({"from_", "name", "detach", "auto_remove", "publish", "interactive",
                          "tty", "image", "command", "init", "detach_keys"})


def refuse_with_from(ctx: click.Context) -> None:
    """A usage error naming the options given with --from that cannot apply."""
    given = [param.opts[-1] for param in ctx.command.params
             if param.name not in FROM_OPTIONS and param.name is not None
             and ctx.get_parameter_source(param.name) in (click.core.ParameterSource.COMMANDLINE,
                                                          click.core.ParameterSource.ENVIRONMENT)]
    if given:
        raise UsageError(f"--from cannot be combined with {', '.join(given)}: the box resumes "
                         "the checkpoint's VM and processes as they were",
                         hint="--from takes --name, --rm, -d, -p, -i, -t and --detach-keys")


def _run_from(cli: CliContext, spec: str, name: str | None, detach: bool, interactive: bool,
              tty: bool, auto_remove: bool, publish: tuple[str, ...], detach_keys: bytes) -> int:
    """run --from BOX:NAME: a new box resumed from another box's memory checkpoint."""
    from boxlite_cli.runtime.clone import from_checkpoint

    box, sep, snapshot = spec.rpartition(":")
    if not sep or not box or not snapshot:
        raise UsageError(f"invalid --from {spec!r}: expected BOX:NAME")
    rt = cli.runtime
    state, memory = from_checkpoint(rt, box, snapshot, name, auto_remove=auto_remove,
                                    publish=publish or None)
    try:
        rt.start(state.id, foreground=not detach, memory=memory)
    except BaseException:
        if auto_remove:
            with contextlib.suppress(BoxliteError):
                rt.remove(state.id, force=True, volumes=True)  # (--rm's: docker's)
        raise
    if detach:
        click.echo(state.id)
        return 0
    from boxlite_cli.runtime.foreground import attach_main

    return attach_main(rt, state.id, interactive, tty, detach_keys=detach_keys)
