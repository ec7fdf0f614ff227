"""boxlite volume: named volumes (host directories under <data dir>/volumes/)."""

from __future__ import annotations

import click

from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import each_box
from boxlite_cli.cli.output import (
    ago,
    confirmed,
    go_time,
    print_json,
    print_lines,
    print_table,
    template_format_option,
)


@click.group()
def volume() -> None:
    """Manage volumes: create, ls, inspect, rm, prune."""


@volume.command("create")
@click.argument("name", required=False)
@pass_cli
def create(cli: CliContext, name: str | None) -> int:
    """Create a volume (NAME, or a random one); prints its name."""
    from boxlite_cli.runtime.volumes import create_volume

    click.echo(create_volume(cli.runtime.volumes, name).name)
    return 0


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only print volume names.")
@template_format_option("{{.Name}}")
@pass_cli
def ls(cli: CliContext, quiet: bool, fmt: str) -> int:
    """List volumes."""
    items = cli.runtime.volumes.all()
    if quiet:
        for v in items:
            click.echo(v.name)
    elif fmt == "json":
        print_json([v.to_json() for v in items])
    elif fmt != "table":
        print_lines(fmt, [{**v.to_json(), "Driver": "local", "Scope": "local",
                           "CreatedAt": go_time(v.created_at)} for v in items])
    else:
        print_table(["DRIVER", "VOLUME NAME", "CREATED"],
                    [["local", v.name, ago(v.created_at)] for v in items])
    return 0


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
@pass_cli
def inspect(cli: CliContext, names: tuple[str, ...]) -> int:
    """Show volumes as JSON (name, mount point on the host, creation time)."""
    print_json([cli.runtime.volumes.get(n).to_json() for n in names])
    return 0


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@pass_cli
def rm(cli: CliContext, names: tuple[str, ...]) -> int:
    """Remove volumes and their data; refused for a volume a box uses."""
    from boxlite_cli.runtime.volumes import remove_volume

    rt = cli.runtime
    return each_box(names, lambda n: remove_volume(rt.volumes, rt.volume_users, n))


@volume.command("prune")
@click.option("-a", "--all", "all_unused", is_flag=True,
              help="Remove every volume no box uses, named ones too.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def prune(cli: CliContext, all_unused: bool, force: bool) -> int:
    """Remove the anonymous volumes no box uses (with -a, every unused volume), with
    their data; prints their names."""
    question = ("Remove all volumes no box uses?" if all_unused
                else "Remove all anonymous volumes no box uses?")
    if not force and not confirmed(question):
        return 0
    for name in cli.runtime.prune_volumes(all_unused):
        click.echo(name)
    return 0
