"""boxlite volume: named volumes (host directories under <data dir>/volumes/)."""

from __future__ import annotations

from typing import Any

import click

from boxlite_cli.cli.completion import complete_volume, complete_volume_filter
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import each_box
from boxlite_cli.cli.lazy import HintedGroup
from boxlite_cli.cli.output import (
    ago,
    confirmed,
    echo_pruned,
    go_time,
    print_json,
    print_lines,
    print_table,
    template_format_option,
)
from boxlite_cli.state.volumes import VolumeInfo


@click.group(cls=HintedGroup)
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


def docker_volume(v: VolumeInfo) -> dict[str, Any]:
    """A volume as docker's `volume inspect` has it, beside boxlite's keys."""
    return {**v.to_json(), "Name": v.name, "Driver": "local", "Mountpoint": v.mountpoint,
            "CreatedAt": go_time(v.created_at), "Scope": "local", "Labels": {}, "Options": {}}


def docker_volume_row(v: VolumeInfo) -> dict[str, Any]:
    """A volume as docker's `volume ls --format` templates have it (its `{{json .}}` has
    these keys alone, as docker's: Labels a `k=v,...` text, Size and Links not counted)."""
    return {"Availability": "N/A", "Driver": "local", "Group": "N/A", "Labels": "",
            "Links": "N/A", "Mountpoint": v.mountpoint, "Name": v.name, "Scope": "local",
            "Size": "N/A", "Status": "N/A"}


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only print volume names.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              shell_complete=complete_volume_filter,
              help="Only volumes that match: dangling=true|false (no box uses it), name=PART.")
@template_format_option("{{.Name}}")
@pass_cli
def ls(cli: CliContext, quiet: bool, filters: tuple[str, ...], fmt: str) -> int:
    """List volumes."""
    from boxlite_cli.runtime.volumes import volume_filter

    wanted = volume_filter(filters, cli.runtime.boxes.mounted_volumes)
    items = [v for v in cli.runtime.volumes.all() if wanted(v)]
    if quiet and fmt == "table":
        for v in items:
            click.echo(v.name)
    elif fmt == "json":
        print_json([v.to_json() for v in items])
    elif fmt != "table":
        print_lines(fmt, [docker_volume_row(v) for v in items])
    else:
        print_table(["DRIVER", "VOLUME NAME", "CREATED"],
                    [["local", v.name, ago(v.created_at)] for v in items])
    return 0


@volume.command("inspect")
@click.option("-f", "--format", "fmt", default="json", show_default=True,
              help="'json', or a template such as '{{.Mountpoint}}' (a line each).")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_volume)
@pass_cli
def inspect(cli: CliContext, fmt: str, names: tuple[str, ...]) -> int:
    """Show volumes as JSON (name, mount point on the host, creation time; docker's keys
    too), or a line each from a template."""
    records = [docker_volume(cli.runtime.volumes.get(n)) for n in names]
    if fmt in ("json", ""):
        print_json(records)
    else:
        print_lines(fmt, records)
    return 0


@volume.command("rm")
@click.option("-f", "--force", is_flag=True,
              help="A volume that is not there is no error (docker's; one in use is still "
                   "refused).")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_volume)
@pass_cli
def rm(cli: CliContext, force: bool, names: tuple[str, ...]) -> int:
    """Remove volumes and their data; refused for a volume a box uses."""
    from boxlite_cli.runtime.volumes import remove_volume

    rt = cli.runtime
    return each_box(names, lambda n: remove_volume(rt.volumes, rt.volume_users, n),
                    missing_is_done=force)


@volume.command("prune")
@click.option("-a", "--all", "all_unused", is_flag=True,
              help="Remove every volume no box uses, named ones too.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def prune(cli: CliContext, all_unused: bool, force: bool) -> int:
    """Remove the anonymous volumes no box uses (with -a, every unused volume), with
    their data; prints their names and the space given back."""
    question = ("Remove all volumes no box uses?" if all_unused
                else "Remove all anonymous volumes no box uses?")
    if not force and not confirmed(question):
        return 0
    pruned = cli.runtime.prune_volumes(all_unused)
    echo_pruned([("Deleted volumes", pruned.removed)], pruned.freed)  # (docker's)
    return 0
