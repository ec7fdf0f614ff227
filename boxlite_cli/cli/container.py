"""boxlite container: docker's `container` group (`container ls`, `container rm`, ...):
the box commands under it, for scripts written for docker. Not listed in help."""

from __future__ import annotations

import click

from boxlite_cli.cli.app import COMMANDS
from boxlite_cli.cli.lazy import LazyGroup

BOX_COMMANDS = ("run", "create", "start", "exec", "attach", "cp", "stop", "rm", "kill",
                "wait", "pause", "unpause", "restart", "inspect", "port", "rename", "prune",
                "stats", "top", "ps", "logs", "export", "commit", "diff", "update")


@click.group(cls=LazyGroup, lazy={name: COMMANDS[name] for name in BOX_COMMANDS},
             aliases={"ls": "ps", "list": "ps"})
def container() -> None:
    """docker's container commands: the box commands (boxlite container ls is boxlite ps)."""
