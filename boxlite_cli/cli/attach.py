"""boxlite attach: join a running box's main process from this terminal."""

from __future__ import annotations

import os

import click

from boxlite_cli.cli.completion import complete_unpaused_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.options import detach_keys_option
from boxlite_cli.errors import UsageError


@click.command()
@click.option("--no-stdin", is_flag=True, help="Do not send standard input to the box.")
@click.option("--sig-proxy/--no-sig-proxy", default=True, show_default=True,
              help="Send SIGINT and SIGTERM to the main process (a box without a tty; "
                   "--no-sig-proxy: they end the attach instead).")
@detach_keys_option
@click.argument("box", shell_complete=complete_unpaused_box)
@pass_cli
def attach(cli: CliContext, no_stdin: bool, sig_proxy: bool, detach_keys: str, box: str) -> int:
    """Attach this terminal to BOX's main process: its output from now on, your input
    to its stdin (a box made with -i), until the box stops (its exit code).

    Ctrl-P Ctrl-Q (or --detach-keys) detaches from a box with a tty (it runs on); in one
    without, Ctrl-C
    goes to the process unless --no-sig-proxy. `boxlite logs` shows what came before.
    """
    from boxlite_cli.runtime.attach import attach as attach_box
    from boxlite_cli.runtime.detachkeys import parse_detach_keys

    keys = parse_detach_keys(detach_keys)
    state = cli.runtime.get(box)
    process = state.config.process
    if process.tty and process.stdin and not no_stdin and not os.isatty(0):
        raise UsageError("the input device is not a TTY",
                         hint="attach with --no-stdin, or from a terminal")
    return attach_box(cli.runtime, box, stdin=not no_stdin, sig_proxy=sig_proxy,
                      detach_keys=keys)
