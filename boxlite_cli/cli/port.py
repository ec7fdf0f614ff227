"""boxlite port: the host ports a running box publishes."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_running_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.runtime.network import published_ports


@click.command()
@click.argument("box", shell_complete=complete_running_box)
@click.argument("private_port", required=False, metavar="[PRIVATE_PORT[/PROTO]]")
@pass_cli
def port(cli: CliContext, box: str, private_port: str | None) -> int:
    """List the port mappings of BOX, or the host side of one box port.

    Prints `80/tcp -> 127.0.0.1:32768` per mapping (with PRIVATE_PORT: only
    `127.0.0.1:32768`). A box that is not running publishes nothing.
    """
    mappings = published_ports(cli.runtime.get(box), private_port)
    for m in mappings:
        click.echo(m.public if private_port else f"{m.private} -> {m.public}")
    return 0
