"""boxlite create: make a box without starting it."""

from __future__ import annotations

from typing import Any

import click

from boxlite_cli.cli.boxspec import create_options
from boxlite_cli.cli.completion import BoxCommandLine, complete_image
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.options import (
    box_options,
    cidfile,
    health_options,
    network_options,
    process_options,
)


# (-h is --hostname here, as in docker run and create: help is --help alone)
@click.command(cls=BoxCommandLine, context_settings={"allow_interspersed_args": False,
                                                   "help_option_names": ["--help"]})
@box_options
@process_options
@network_options
@health_options
@click.argument("image", shell_complete=complete_image)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def create(cli: CliContext, /, image: str, command: tuple[str, ...], cidfile_path: str | None,
           **options: Any) -> int:
    """Create a box from IMAGE without starting it; prints its id."""
    opts = create_options(image, command, True, options)
    with cidfile(cidfile_path) as write_cid:
        state = cli.runtime.create(opts)
        write_cid(state.id)
    click.echo(state.id)
    return 0
