"""boxlite ps: list boxes."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from boxlite_cli.cli.completion import complete_box_filter
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import (
    ago,
    go_time,
    human_duration,
    human_size,
    print_json,
    print_lines,
    print_table,
    template_format_option,
)
from boxlite_cli.cli.paramtypes import Count
from boxlite_cli.cli.printable import printable
from boxlite_cli.errors import BoxliteError, StateCorrupt
from boxlite_cli.runtime.boxfilter import health_status, parse_filters
from boxlite_cli.state.health import STARTING
from boxlite_cli.state.records import BoxState, Status
from boxlite_cli.state.volumes import VOLUME

if TYPE_CHECKING:
    from boxlite_cli.cli.template import Row
    from boxlite_cli.runtime.runtime import Runtime

# docker's column names of ps's template fields (the rest: the name in capitals)
HEADERS = {"ID": "BOX ID", "RunningFor": "CREATED", "CreatedAt": "CREATED AT",
           "LocalVolumes": "LOCAL VOLUMES"}


def status_text(state: BoxState) -> str:
    if state.status == Status.RUNNING:
        up = f"Up {human_duration(time.time() - (state.started_at or time.time()))}"
        if state.is_paused:
            return f"{up} (Paused)"
        if state.is_held:  # (QEMU stopped its VM: see `boxlite inspect`, State.Error)
            return f"{up} (Stopped: host disk full)"
        if state.health is not None:  # (docker's words)
            health = state.health.status
            return f"{up} (health: {health})" if health == STARTING else f"{up} ({health})"
        return up
    if state.status == Status.EXITED:
        code = state.exit_code if state.exit_code is not None else "?"
        ended = "Restarting" if state.is_restarting else "Exited"  # (docker's words)
        return f"{ended} ({code}) {ago(state.finished_at)}".rstrip()
    return state.status.value.capitalize()


def _image_id(rt: Runtime, ref: str) -> str | None:
    """The id of the image the name `ref` means in the store now, if any."""
    try:
        return rt.images.lookup(ref).id
    except (BoxliteError, OSError, ValueError, KeyError, TypeError):
        return None


def image_column(rt: Runtime) -> Callable[[BoxState], str]:
    """docker's IMAGE of a box: the name it was made from while that name still means
    its image; the image's short id once the name means another (the tag moved to a
    newer pull) or none while the image is here (untagged); the name of an image that
    is not here at all (an imported box's)."""
    now: dict[str, str | None] = {}

    def shown(state: BoxState) -> str:
        ref, image_id = state.config.image, state.config.image_id
        if ref not in now:
            now[ref] = _image_id(rt, ref)
        if now[ref] == image_id:
            return ref
        try:
            here = rt.images.has_blob(image_id)
        except BoxliteError:
            here = False
        return image_id.removeprefix("sha256:")[:12] if now[ref] or here else ref

    return shown


def box_json(state: BoxState) -> dict[str, Any]:
    return {
        "id": state.id, "name": state.name, "image": state.config.image,
        "command": state.config.process.argv,
        "status": "restarting" if state.is_restarting else state.status.value,
        "paused": state.is_paused,
        "exit_code": state.exit_code, "error": state.error, "created_at": state.created_at,
        "started_at": state.started_at, "finished_at": state.finished_at,
        "cpus": state.config.cpus, "memory_mib": state.config.memory_mib, "accel": state.accel,
        "labels": state.config.labels, "health": health_status(state),
    }


def disk_size(disk: Path) -> str:
    """What a box's root disk (its own writes) takes on the host: docker's ps SIZE."""
    try:
        return human_size(os.stat(disk).st_blocks * 512)
    except OSError:
        return human_size(0)


def ports_text(state: BoxState) -> str:
    """docker's PORTS: `127.0.0.1:8080->80/tcp, ...` of a running box."""
    if state.status != Status.RUNNING:
        return ""
    return ", ".join(f"{p.public}->{p.private}" for p in state.ports)


def _ellipsis(text: str, cut: bool, most: int = 15) -> str:
    """docker's stringutils.Ellipsis: `text` cut to `most` characters, the last one …"""
    return text[:most - 1] + "…" if cut and len(text) > most else text


def docker_row(state: BoxState, id_len: int | None, disk: Path, image: str) -> Row:
    """A box as docker's `ps --format` templates know it (`{{.Names}}`, `{{.Status}}`,
    `{{.Label "key"}}`); `disk`: its root disk, whose allocated size is `{{.Size}}`;
    `image`: its IMAGE."""
    from boxlite_cli.cli.template import Row

    mounts = state.config.mounts
    return Row({
        "ID": state.id[:id_len], "Names": state.name, "Image": image,
        "Command": _command(state, id_len is not None), "CreatedAt": go_time(state.created_at),
        "RunningFor": ago(state.created_at), "Status": status_text(state),
        "State": "paused" if state.is_paused else state.status.value,
        "Ports": ports_text(state),
        "Labels": ",".join(f"{k}={v}" for k, v in state.config.labels.items()),
        # (docker's: a volume's name, a bind's host path, each cut to 15 characters
        # unless --no-trunc)
        "Mounts": ",".join(_ellipsis(m.source, id_len is not None) for m in mounts),
        "LocalVolumes": str(sum(1 for m in mounts if m.kind == VOLUME)),
        "Networks": state.config.network.mode,
        "Size": disk_size(disk),
    }, methods={"Label": dict(state.config.labels)})


@click.command()
@click.option("-a", "--all", "all_boxes", is_flag=True, help="Show all boxes (default: running).")
@click.option("-q", "--quiet", is_flag=True, help="Only print box ids.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate ids and commands.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              shell_complete=complete_box_filter,
              help="Only boxes that match: id, name, status, exited, ancestor, label "
                   "(KEY or KEY=VALUE), health (starting, healthy, unhealthy, none), "
                   "before and since (a box: those created before or after it), volume "
                   "(a volume, host path or mount point), publish and expose (a box port "
                   "or FIRST-LAST, /tcp or /udp); a key given twice matches either, "
                   "except label: both.")
@click.option("-n", "--last", type=Count(), default=None, metavar="N",
              help="Show the N boxes created last (all states).")
@click.option("-l", "--latest", is_flag=True, help="Show the box created last (all states).")
@click.option("-s", "--size", "show_size", is_flag=True,
              help="Show what each box's root disk takes on the host (its own writes).")
@template_format_option("{{.Names}} {{.Status}}")
@pass_cli
def ps(cli: CliContext, all_boxes: bool, quiet: bool, no_trunc: bool, filters: tuple[str, ...],
       last: int | None, latest: bool, show_size: bool, fmt: str) -> int:
    """List boxes (running ones, unless -a, -n, -l or a filter on another status)."""
    id_len = None if no_trunc else 12
    wanted = parse_filters(filters)
    wanted.resolve_boxes(lambda ref: cli.runtime.get(cli.runtime.resolve(ref)).created_at)
    wanted.resolve_images(lambda ref: _image_id(cli.runtime, ref))
    if latest:
        last = 1
    items = cli.runtime.list_boxes(all_boxes=all_boxes or last is not None or wanted.needs_all)
    states = [s for s in items if isinstance(s, BoxState) and wanted.matches(s)]
    states.sort(key=lambda s: s.created_at, reverse=True)
    if last is not None:
        states = states[:last]
    broken = [e for e in items if isinstance(e, StateCorrupt)]
    if quiet and fmt == "table":  # (a --format given wins over -q, as in docker)
        for s in states:
            click.echo(s.id[:id_len])
        if all_boxes and not filters:  # (`rm -f $(boxlite ps -aq)` takes them too)
            for e in broken:
                if e.box_id:
                    click.echo(e.box_id[:id_len])
    elif fmt == "json":
        print_json([box_json(s) for s in states])
    elif fmt != "table":
        image = image_column(cli.runtime)
        print_lines(fmt, [docker_row(s, id_len, cli.runtime.files(s.id).rootfs_disk, image(s))
                          for s in states], HEADERS)
    else:
        image = image_column(cli.runtime)
        rows = [[s.id[:id_len], image(s), _command(s, not no_trunc), ago(s.created_at),
                 status_text(s), ports_text(s), s.name] for s in states]
        headers = ["BOX ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
        if show_size:
            headers.append("SIZE")
            for row, s in zip(rows, states, strict=True):
                row.append(disk_size(cli.runtime.files(s.id).rootfs_disk))
        print_table(headers, rows)
    for e in broken if all_boxes else []:
        click.echo(f"boxlite: warning: {printable(e.message)}", err=True)
    return 0


def _command(state: BoxState, truncate: bool = True) -> str:
    text = shlex.join(state.config.process.argv)
    return f'"{text[:20]}…"' if truncate and len(text) > 20 else f'"{text}"'
