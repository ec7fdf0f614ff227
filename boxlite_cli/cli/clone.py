"""boxlite clone: thin copies of a box on one shared snapshot of its disk."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import ending_on_signals
from boxlite_cli.cli.paramtypes import Count


@click.command()
@click.option("--name", metavar="NAME",
              help="Name of the clone; with -n, NAME, NAME-2, ... (default: random names).")
@click.option("-n", "--count", default=1, show_default=True, metavar="COUNT", type=Count(1),
              help="How many clones to make.")
@click.argument("box", shell_complete=complete_box)
@pass_cli
def clone(cli: CliContext, name: str | None, count: int, box: str) -> int:
    """Make COUNT new boxes from BOX (running or stopped); prints their ids.

    BOX's disk is snapshotted (`clone-<hex>`) and each clone gets its own empty layer on
    that snapshot, with BOX's config (command, cpus, memory, network, volumes; anonymous
    volumes are new). Clones are created, not started, and never see each other's
    writes. BOX cannot be removed while clones are built on it.
    """
    from boxlite_cli.runtime.clone import clone as clone_box

    with ending_on_signals():  # (a SIGTERM takes back what was made, as Ctrl-C)
        made = clone_box(cli.runtime, box, name=name, count=count)
    for state in made:
        click.echo(state.id)
    return 0
