"""boxlite run: create a box, start it, and run its main process in the foreground."""

from __future__ import annotations

import contextlib

import click

from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import report
from boxlite_cli.cli.options import (
    box_options,
    cold_option,
    memory_mib,
    network_options,
    process_options,
    to_network,
    to_process_options,
)
from boxlite_cli.errors import BoxliteError
from boxlite_cli.runtime.runtime import CreateOptions


@click.command(context_settings={"allow_interspersed_args": False})
@box_options
@process_options
@network_options
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the box id.")
@cold_option
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def run(cli: CliContext, image: str, command: tuple[str, ...], detach: bool, cold: bool,
        name: str | None,
        entrypoint: str | None, cpus: int, memory: str, accel: str | None, vmm: str | None,
        auto_remove: bool, pull: str,
        interactive: bool, tty: bool, env: tuple[str, ...], env_files: tuple[str, ...],
        workdir: str | None, user: str | None, timeout: float,
        network: str, dns: tuple[str, ...], add_hosts: tuple[str, ...],
        publish: tuple[str, ...], volumes: tuple[str, ...]) -> int:
    """Run a command in a new box.

    IMAGE is an image reference (the built-in one is localhost/debian:bookworm);
    COMMAND overrides the image's CMD. Exits with the command's exit code, 125 when
    boxlite itself failed, 126 when the command cannot be executed, 127 when it is
    not found, 128+N when it was killed by signal N.
    """
    from boxlite_cli.runtime.foreground import attach_main

    rt = cli.runtime
    opts = CreateOptions(
        image=image, name=name, cpus=cpus, memory_mib=memory_mib(memory), accel=accel,
        vmm=vmm,
        pull=pull, auto_remove=auto_remove, detach=detach,
        network=to_network(network, dns, add_hosts, publish),
        volumes=list(volumes),
        process=to_process_options(command, interactive, tty, env, env_files, workdir, user,
                                   timeout, entrypoint),
    )
    state = rt.create(opts)
    try:
        result = rt.start(state.id, foreground=not detach, cold=cold)
    except BaseException:
        if auto_remove:
            with contextlib.suppress(BoxliteError):
                rt.remove(state.id, force=True)
        raise
    if result.exit_code is not None:
        report(result.error or "the command could not be started")
        return result.exit_code
    if detach:
        click.echo(state.id)
        return 0
    return attach_main(rt, state.id, interactive, tty)
