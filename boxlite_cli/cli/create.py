"""boxlite create: make a box without starting it."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_image
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.options import (
    box_options,
    cidfile,
    memory_mib,
    network_options,
    process_options,
    to_network,
    to_process_options,
)
from boxlite_cli.runtime.mountflag import split_mounts
from boxlite_cli.runtime.runtime import CreateOptions
from boxlite_cli.runtime.spec import parse_cpus, parse_disk_size, parse_labels, read_label_files
from boxlite_cli.state.capabilities import normalize


# (-h is --hostname here, as in docker run and create: help is --help alone)
@click.command(context_settings={"allow_interspersed_args": False,
                                  "help_option_names": ["--help"]})
@box_options
@process_options
@network_options
@click.argument("image", shell_complete=complete_image)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def create(cli: CliContext, image: str, command: tuple[str, ...], name: str | None,
           cidfile_path: str | None,
           hostname: str | None, stop_signal: str | None,
           labels: tuple[str, ...], label_files: tuple[str, ...],
        stop_timeout: float | None, pids_limit: int | None,
           cap_add: tuple[str, ...], cap_drop: tuple[str, ...],
           read_only: bool, tmpfs: tuple[str, ...], restart: str,
           entrypoint: str | None, cpus: str, memory: str, disk_size: str | None,
           accel: str | None, vmm: str | None,
           auto_remove: bool, pull: str, interactive: bool, tty: bool, env: tuple[str, ...],
           env_files: tuple[str, ...], workdir: str | None, user: str | None,
           timeout: float,
           network: str, dns: tuple[str, ...], add_hosts: tuple[str, ...],
           publish: tuple[str, ...], publish_all: bool, volumes: tuple[str, ...],
           mounts: tuple[str, ...]) -> int:
    """Create a box from IMAGE without starting it; prints its id."""
    vcpus, cpu_limit = parse_cpus(cpus)
    mount_volumes, mount_tmpfs = split_mounts(mounts)
    opts = CreateOptions(
        image=image, name=name, cpus=vcpus, cpu_limit=cpu_limit, memory_mib=memory_mib(memory),
        disk_size=parse_disk_size(disk_size), accel=accel,
        vmm=vmm,
        pull=pull, auto_remove=auto_remove, detach=True,
        network=to_network(network, dns, add_hosts, publish),
        volumes=[*volumes, *mount_volumes], hostname=hostname, stop_signal=stop_signal,
        pids_limit=pids_limit, stop_timeout=stop_timeout,
        labels=parse_labels(read_label_files(label_files) + list(labels)),
        cap_add=normalize(cap_add, "--cap-add"), cap_drop=normalize(cap_drop, "--cap-drop"),
        read_only=read_only, tmpfs=[*tmpfs, *mount_tmpfs], restart=restart,
        publish_all=publish_all,
        process=to_process_options(command, interactive, tty, env, env_files, workdir, user,
                                   timeout, entrypoint),
    )
    with cidfile(cidfile_path) as write_cid:
        state = cli.runtime.create(opts)
        write_cid(state.id)
    click.echo(state.id)
    return 0
