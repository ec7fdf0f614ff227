"""boxlite inspect: everything known about boxes, as JSON."""

from __future__ import annotations

import contextlib
from typing import Any

import click

from boxlite_cli.cli.completion import complete_box_or_image
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.dockerview import docker_view
from boxlite_cli.cli.errors import report
from boxlite_cli.cli.image_inspect import inspected_image
from boxlite_cli.cli.output import print_records
from boxlite_cli.errors import BoxliteError, NotFound, UsageError
from boxlite_cli.state.pidfile import read_pidfile
from boxlite_cli.state.records import BoxState


def _image_or_none(cli: CliContext, ref: str) -> dict[str, Any] | None:
    """The record of the image `ref` names, for `inspect IMAGE` (docker inspects either kind)."""
    try:
        return inspected_image(cli, ref)
    except BoxliteError:
        return None


def _latest(cli: CliContext) -> str:
    """The id of the box created last (NotFound when there is none)."""
    states = [s for s in cli.runtime.list_boxes(all_boxes=True) if isinstance(s, BoxState)]
    if not states:
        raise NotFound("there is no box", hint="create one: boxlite create IMAGE")
    return max(states, key=lambda s: s.created_at).id


@click.command()
@click.option("-f", "--format", "fmt", default="json", show_default=True,
              help="'json', or a template such as '{{.State.Status}} {{.State.ExitCode}}'.")
@click.option("-l", "--latest", is_flag=True, help="The box created last (no BOX needed).")
@click.option("--type", "kind", type=click.Choice(["box", "container", "image"]), default=None,
              help="Look for boxes only (docker's `container` too) or images only "
                   "[default: a box, else an image].")
@click.argument("boxes", nargs=-1, shell_complete=complete_box_or_image)
@pass_cli
def inspect(cli: CliContext, fmt: str, latest: bool, kind: str | None,
            boxes: tuple[str, ...]) -> int:
    """Print the full record of boxes or images (a JSON array, or a line each from a template)."""
    if latest and boxes:
        raise UsageError("inspect takes BOX or -l, not both",
                         hint="see 'boxlite inspect --help'")
    if latest:
        boxes = (_latest(cli),)
    elif not boxes:
        raise UsageError("inspect needs at least one BOX or IMAGE (or -l)",
                         hint="see 'boxlite inspect --help'")
    out: list[dict[str, Any]] = []
    missing: list[NotFound] = []
    for ref in boxes:
        try:
            if kind == "image":
                raise NotFound(f"no such image: {ref}")
            state = cli.runtime.get(ref)
        except NotFound as e:
            image = _image_or_none(cli, ref) if kind in (None, "image") else None
            if image is None:
                missing.append(e)  # the others are still printed (docker's way)
            else:
                out.append(image)
            continue
        files = cli.runtime.files(state.id)
        record = state.to_json()
        vmm = read_pidfile(files.vmm_pid)
        record.update(docker_view(state, vmm.pid if vmm is not None and vmm.alive() else 0,
                                  cli.runtime.volumes.data_dir, files.container_log,
                                  _image_volumes(cli, state.config.image_id)))
        record["paths"] = {"dir": str(files.dir), "console_log": str(files.console_log),
                           "rootfs_disk": str(files.rootfs_disk),
                           "agent_socket": str(files.agent_socket)}
        out.append(record)
    if out or fmt in ("json", ""):
        print_records(fmt, out)
    for error in missing[:-1]:
        report(error.message)
    if missing:
        raise missing[-1]
    return 0


def _image_volumes(cli: CliContext, image_id: str) -> tuple[str, ...]:
    """The VOLUMEs of the image a box was made of (none when it is gone)."""
    with contextlib.suppress(BoxliteError, OSError, ValueError):
        image = cli.runtime.image_ops.find(image_id) if image_id else None
        config = image.config.get("config") if image is not None else None
        volumes = config.get("Volumes") if isinstance(config, dict) else None
        if isinstance(volumes, dict):
            return tuple(sorted(str(v) for v in volumes))
    return ()
