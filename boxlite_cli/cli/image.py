"""boxlite image: the image commands under one group (as `docker image`)."""

from __future__ import annotations

import click

from boxlite_cli.cli.lazy import LazyGroup

IMAGE_COMMANDS = {
    "ls": "boxlite_cli.cli.images:images",
    "pull": "boxlite_cli.cli.pull:pull",
    "push": "boxlite_cli.cli.push:push",
    "rm": "boxlite_cli.cli.rmi:rmi",
    "prune": "boxlite_cli.cli.rmi:prune",
    "load": "boxlite_cli.cli.load:load",
    "save": "boxlite_cli.cli.save:save",
    "inspect": "boxlite_cli.cli.image_inspect:image_inspect",
    "tag": "boxlite_cli.cli.tag:tag",
    "history": "boxlite_cli.cli.history:history",
}


@click.group(cls=LazyGroup, lazy=IMAGE_COMMANDS)
def image() -> None:
    """Manage images: ls, pull, push, rm, prune, load, save, inspect, tag, history."""
