"""boxlite inspect: everything known about boxes, as JSON."""

from __future__ import annotations

from typing import Any

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import print_json
from boxlite_cli.cli.template import render


@click.command()
@click.option("-f", "--format", "fmt", default="json", show_default=True,
              help="'json', or a template such as '{{.Status}} {{.ExitCode}}'.")
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_box)
@pass_cli
def inspect(cli: CliContext, fmt: str, boxes: tuple[str, ...]) -> int:
    """Print the full record of one or more boxes (a JSON array, or a line each from a template)."""
    out: list[dict[str, Any]] = []
    for ref in boxes:
        state = cli.runtime.get(ref)
        files = cli.runtime.files(state.id)
        record = state.to_json()
        record["paths"] = {"dir": str(files.dir), "console_log": str(files.console_log),
                           "rootfs_disk": str(files.rootfs_disk),
                           "agent_socket": str(files.agent_socket)}
        out.append(record)
    if fmt == "json":
        print_json(out)
        return 0
    for record in out:
        click.echo(render(fmt, record))
    return 0
