"""boxlite info: versions, paths and counts."""

from __future__ import annotations

import platform
from typing import Any

import click

from boxlite_cli import __version__
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import print_json, print_lines, template_format_option
from boxlite_cli.errors import BoxliteError


def gather(cli: CliContext) -> dict[str, Any]:
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
    }


def _print_tree(data: dict[str, Any], indent: int = 0) -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(" " * indent + f"{key}:")
            _print_tree(value, indent + 2)
        else:
            click.echo(" " * indent + f"{key}: {value}")


@click.command()
@template_format_option("{{.Version}}")
@pass_cli
def info(cli: CliContext, fmt: str) -> int:
    """Show versions, paths and counts."""
    data = gather(cli)
    if fmt == "json":
        print_json(data)
    elif fmt != "table":
        print_lines(fmt, [data])
    else:
        _print_tree(data)
    return 0
