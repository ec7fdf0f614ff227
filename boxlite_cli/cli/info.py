"""boxlite info: versions, paths and counts."""

from __future__ import annotations

import os
import platform
from typing import Any

import click

from boxlite_cli import __version__
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import print_json, print_lines, template_format_option
from boxlite_cli.errors import BoxliteError


def gather(cli: CliContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """(boxlite's own view, docker info's fields) of this host."""
    from boxlite_cli.runtime.doctor import tool_version
    from boxlite_cli.state.paths import payload_cache
    from boxlite_cli.state.records import BoxState, Status

    rt = cli.runtime
    states = [s for s in rt.list_boxes(all_boxes=True) if isinstance(s, BoxState)]
    spares = rt.spares.list()
    payload: dict[str, Any] = {"cache": str(payload_cache())}
    try:
        p = rt.payload()
        payload.update(path=str(p.root), **p.manifest())
    except BoxliteError as e:
        payload["error"] = e.message
    return {
        "version": __version__,
        "python": platform.python_version(),
        "host": {"kernel": platform.release(), "arch": platform.machine()},
        "qemu": tool_version("qemu-system-x86_64"),
        "home": {"data": str(rt.paths.data), "config": str(rt.paths.config),
                 "cache": str(rt.paths.cache)},
        "payload": payload,
        "boxes": {"total": len(states),
                  "running": sum(s.status == Status.RUNNING for s in states),
                  "exited": sum(s.status == Status.EXITED for s in states)},
        "images": len({i.id for i in rt.images.all()}),  # (images, not their names)
        # (warm-start VMs waiting for the next fresh box: runtime/spares.py)
        "spares": {"ready": sum(s.ready for s in spares),
                   "total": sum(s.process is not None for s in spares)},  # (alive: not
        # what a killed one left, which the next start sweeps)
    }, docker_fields(states, rt.paths.data)


def docker_fields(states: list[Any], data_dir: Any) -> dict[str, Any]:
    """docker info's fields that scripts read (`--format '{{.NCPU}}'`), of this host."""
    from boxlite_cli.state.records import Status

    running = [s for s in states if s.status == Status.RUNNING]
    paused = sum(s.is_paused for s in running)
    return {
        "server_version": __version__, "name": platform.node(), "os_type": "linux",
        "operating_system": _os_name(), "kernel_version": platform.release(),
        "architecture": platform.machine(), "ncpu": os.cpu_count() or 1,
        "mem_total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "containers": len(states), "containers_running": len(running) - paused,
        "containers_paused": paused, "containers_stopped": len(states) - len(running),
        "docker_root_dir": str(data_dir),
    }


def _os_name() -> str:
    """The host's PRETTY_NAME (os-release), as docker info's OperatingSystem."""
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        return "Linux"


def _print_tree(data: dict[str, Any], indent: int = 0) -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(" " * indent + f"{key}:")
            _print_tree(value, indent + 2)
        else:
            click.echo(" " * indent + f"{key}: {value}")


@click.command()
@template_format_option("{{.NCPU}}", short=True)
@pass_cli
def info(cli: CliContext, fmt: str) -> int:
    """Show versions, paths and counts."""
    own, docker = gather(cli)
    if fmt == "table":  # (docker's fields repeat the rest: for scripts, not this view)
        _print_tree(own)
    elif fmt == "json":
        print_json(own | docker)
    else:
        print_lines(fmt, [own | docker])
    return 0
