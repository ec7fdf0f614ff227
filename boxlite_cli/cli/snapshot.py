"""boxlite snapshot: disk snapshots and memory checkpoints of a box."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box, complete_snapshot
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import ending_on_signals
from boxlite_cli.cli.lazy import HintedGroup
from boxlite_cli.cli.output import (
    ago,
    print_json,
    print_lines,
    print_table,
    rfc3339,
    template_format_option,
)


@click.group(cls=HintedGroup)
def snapshot() -> None:
    """Snapshots of a box's disk, and checkpoints of its memory (create, ls, restore, rm)."""


@snapshot.command("create")
@click.option("--memory", is_flag=True,
              help="Also save the running VM's memory (a checkpoint to resume with "
                   "`boxlite start --checkpoint NAME BOX`).")
@click.argument("box", shell_complete=complete_box)
@click.argument("name")
@pass_cli
def create(cli: CliContext, memory: bool, box: str, name: str) -> int:
    """Take snapshot NAME of BOX (running or stopped; the VM pauses for the switch)."""
    from boxlite_cli.runtime import snapshots

    with ending_on_signals():  # (SIGTERM as Ctrl-C: a snapshot under way is finished)
        snapshots.create(cli.runtime, box, name, memory=memory)
    click.echo(name)
    return 0


@snapshot.command("ls")
@template_format_option("{{.Name}}")
@click.argument("box", shell_complete=complete_box)
@pass_cli
def ls(cli: CliContext, fmt: str, box: str) -> int:
    """List the snapshots of BOX, oldest first."""
    from boxlite_cli.runtime import snapshots

    items = snapshots.list_all(cli.runtime, box)
    records = [{"name": s.name, "created": rfc3339(s.created), "memory": bool(s.memory),
                "file": s.file} for s in items]
    if fmt == "json":
        print_json(records)
        return 0
    if fmt != "table":
        print_lines(fmt, records)
        return 0
    print_table(["NAME", "CREATED", "MEMORY"],
                [[s.name, ago(s.created), "yes" if s.memory else "no"] for s in items])
    return 0


@snapshot.command("restore")
@click.argument("box", shell_complete=complete_box)
@click.argument("name", shell_complete=complete_snapshot)
@pass_cli
def restore(cli: CliContext, box: str, name: str) -> int:
    """Roll the disk of stopped BOX back to snapshot NAME (later snapshots are kept)."""
    from boxlite_cli.runtime import snapshots

    snapshots.restore(cli.runtime, box, name)
    click.echo(name)
    return 0


@snapshot.command("rm")
@click.argument("box", shell_complete=complete_box)
@click.argument("name", shell_complete=complete_snapshot)
@pass_cli
def rm(cli: CliContext, box: str, name: str) -> int:
    """Remove snapshot NAME of BOX.

    When the stopped box's own disks are built on it, it is merged into them. Refused
    while another box's disk is built on it, or while the box runs on it."""
    from boxlite_cli.runtime import snapshots

    snapshots.remove(cli.runtime, box, name)
    click.echo(name)
    return 0
