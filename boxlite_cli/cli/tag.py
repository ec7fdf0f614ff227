"""boxlite tag: another name for an image (docker's tag)."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_image
from boxlite_cli.cli.context import CliContext, pass_cli


@click.command()
@click.argument("source", shell_complete=complete_image)
@click.argument("target")
@pass_cli
def tag(cli: CliContext, source: str, target: str) -> int:
    """Give the image SOURCE (a reference or an image id) the name TARGET too
    (REPOSITORY[:TAG]; :latest when no tag is given)."""
    cli.runtime.tag(source, target)
    return 0
