"""boxlite exec: run another process in a running box."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import BoxCommandLine, complete_running_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import report
from boxlite_cli.cli.options import (
    check_tty_input,
    detach_keys_option,
    process_options,
    to_process_options,
)
from boxlite_cli.cli.output import one_output_file, std_fds
from boxlite_cli.errors import KILLED_WITH_THE_BOX, BoxliteError


@click.command("exec", cls=BoxCommandLine, context_settings={"allow_interspersed_args": False})
@process_options
@click.option("-d", "--detach", is_flag=True, help="Start the process and return at once.")
@detach_keys_option
@click.argument("box", shell_complete=complete_running_box)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_cli
def exec_(cli: CliContext, box: str, command: tuple[str, ...], detach: bool, interactive: bool,
          tty: bool, env: tuple[str, ...], env_files: tuple[str, ...], workdir: str | None,
          user: str | None, timeout: float, detach_keys: str) -> int:
    """Run COMMAND in the running BOX; exits with its exit code.

    With -it, the detach keys leave it running on (its output then goes nowhere).
    The signals this command gets go to the process (Ctrl-C through its terminal with
    -it); one that ignores a SIGTERM or SIGHUP runs on, and this command ends 3 s later
    with 128 + N (a `timeout`, a closed terminal), as docker's exec ends at once.
    """
    check_tty_input(interactive, tty, detach)
    from boxlite_cli.runtime.detachkeys import parse_detach_keys

    keys = parse_detach_keys(detach_keys)  # (bad keys fail before the process starts)
    # (-d -i: no stdin, as docker's exec: nothing could ever feed an exec's, or close it)
    opts = to_process_options(command, interactive and not detach, tty, env, env_files, workdir,
                              user, timeout)
    fds = None if detach or interactive or tty else std_fds()
    if fds is not None:
        from boxlite_cli.runtime.execdirect import exec_direct

        result = exec_direct(cli.runtime, box, opts, *fds)
        if result is not None:
            code, error = result
            if error:
                report(error)
            return code
    from boxlite_cli.runtime.session import Session  # gRPC: -i, -t, -d
    from boxlite_cli.runtime.terminal import (
        FORWARDED_SIGNALS,
        PROXIED_SIGNALS,
        SignalRelay,
        forwarding_signals,
    )

    box_id = cli.runtime.resolve(box)
    # A signal while the process starts is for it too (not -d's): kept, then forwarded.
    relay = SignalRelay()
    with forwarding_signals(relay, () if detach else FORWARDED_SIGNALS if tty else PROXIED_SIGNALS):
        client, started = cli.runtime.exec(box_id, opts, detach=detach,
                                           merge_stderr=not tty and one_output_file())
        try:
            if started.error_exit_code:
                report(started.error)
                return started.error_exit_code
            if detach:
                return 0
            try:  # (the detach keys: Detached, said and 0 in cli/errors.py)
                return Session(client, started.exec_id, stdin=interactive, tty=tty,
                               group_signals=True, held_signals=relay.held,
                               detach_keys=keys if interactive and tty else None
                               ).run().exit_code
            except BoxliteError:
                # (its box was removed or stopped meanwhile: killed with it, as docker's)
                if cli.runtime.stopped_in_order(box_id):
                    return KILLED_WITH_THE_BOX
                raise
        finally:
            client.close()
