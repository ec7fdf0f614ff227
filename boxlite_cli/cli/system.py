"""boxlite system: the whole of boxlite's data at once (docker's `system prune`, `df`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.info import info
from boxlite_cli.cli.lazy import HintedGroup
from boxlite_cli.cli.output import (
    confirmed,
    echo_pruned,
    human_size,
    print_json,
    print_lines,
    print_table,
    template_format_option,
)
from boxlite_cli.cli.rmi import prune_images
from boxlite_cli.state.diskuse import Pruned, allocated_bytes
from boxlite_cli.state.records import BoxState, Status
from boxlite_cli.state.volumes import VOLUME

if TYPE_CHECKING:
    from boxlite_cli.oci.store import Image
    from boxlite_cli.runtime.runtime import Runtime


@click.group(cls=HintedGroup)
def system() -> None:
    """Manage boxlite's data as a whole: prune, df (and info)."""


@system.command("prune")
@click.option("-a", "--all", "all_unused", is_flag=True,
              help="Remove every image no box uses, not only the dangling ones.")
@click.option("--volumes", is_flag=True, help="Remove the anonymous volumes no box uses too.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@pass_cli
def prune(cli: CliContext, all_unused: bool, volumes: bool, force: bool) -> int:
    """Remove the boxes that are not running, the images no box needs (dangling ones,
    or with -a all unused), warm-start templates, what killed exports, imports and
    clones left, and with --volumes the anonymous volumes no box uses."""
    what = ["all stopped boxes",
            "all images without at least one box" if all_unused else "all dangling images",
            "all warm-start templates (rebuilt on use)"]
    if volumes:
        what.append("all anonymous volumes not used by a box")
    question = "This will remove:\n" + "".join(f"  - {w}\n" for w in what) + \
        "Are you sure you want to continue?"
    if not force and not confirmed(question):
        return 0
    rt = cli.runtime
    boxes = rt.prune()
    pruned_volumes = rt.prune_volumes() if volumes else Pruned()
    images = prune_images(cli, all_unused)
    from boxlite_cli.runtime.staging import clean_stale, staging_root

    staged = allocated_bytes(staging_root(rt.paths))
    clean_stale(rt.paths)  # (what killed exports, imports and clones left)
    images.freed += staged - allocated_bytes(staging_root(rt.paths))
    echo_pruned([("Deleted boxes", boxes.removed), ("Deleted volumes", pruned_volumes.removed),
                 ("Untagged images", images.untagged), ("Deleted images", images.deleted)],
                images.freed + boxes.freed + pruned_volumes.freed)
    return 0


@system.command("df")
@template_format_option("{{.Type}} {{.Size}}")
@pass_cli
def df(cli: CliContext, fmt: str) -> int:
    """Show the disk space images, boxes and volumes take."""
    rt = cli.runtime
    states = [s for s in rt.list_boxes(all_boxes=True) if isinstance(s, BoxState)]
    used_images = {s.config.image_id for s in states}
    images = {i.id: i for i in rt.images.all_references()}
    used_volumes = {m.source for s in states for m in s.config.mounts if m.kind == VOLUME}
    volumes = rt.volumes.all()
    box_sizes = {s.id: allocated_bytes(rt.files(s.id).dir) for s in states}
    from boxlite_cli.runtime.staging import staging_root, stale_bytes

    # (exports, imports and clones under way, and what killed ones left: prune's)
    staged, leftover = allocated_bytes(staging_root(rt.paths)), stale_bytes(rt.paths)
    volume_sizes = {v.name: allocated_bytes(Path(v.mountpoint)) for v in volumes}
    templates = [t for t in rt.templates.root.iterdir() if t.is_dir()] \
        if rt.templates.root.is_dir() else []
    template_size = allocated_bytes(rt.templates.root)
    rows = [
        _usage("Images", len(images), sum(1 for i in images if i in used_images),
               allocated_bytes(rt.images.root), _image_reclaimable(rt, images, used_images)),
        _usage("Boxes", len(states), sum(1 for s in states if s.status == Status.RUNNING),
               sum(box_sizes.values()) + staged,
               sum(box_sizes[s.id] for s in states if s.status != Status.RUNNING) + leftover),
        _usage("Local Volumes", len(volumes), sum(1 for v in volumes if v.name in used_volumes),
               sum(volume_sizes.values()),
               sum(n for v, n in volume_sizes.items() if v not in used_volumes)),
        # (docker's Build Cache: what is made again on use)
        _usage("Warm-start Templates", len(templates), 0, template_size, template_size),
    ]
    if fmt == "json":
        print_json(rows)
        return 0
    if fmt != "table":
        print_lines(fmt, [{**r, "TotalCount": r["total"], "Size": human_size(r["size"]),
                           "Reclaimable": human_size(r["reclaimable"])} for r in rows])
        return 0
    print_table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
                [[str(r["type"]), str(r["total"]), str(r["active"]), human_size(r["size"]),
                  human_size(r["reclaimable"])] for r in rows])
    return 0


def _image_reclaimable(rt: Runtime, images: dict[str, Image], used: set[str]) -> int:
    """What removing the images no box uses would free: the blobs only they need (a
    layer two images share is counted once) and their unpacked root file systems, and
    the partial downloads of failed pulls (prune takes them)."""
    users: dict[str, set[str]] = {}
    for image_id, image in images.items():
        for digest in (image.manifest_digest, image_id, *image.layers):
            users.setdefault(digest, set()).add(image_id)
    blobs = sum(allocated_bytes(rt.images.blob_path(digest)) for digest, ids in users.items()
                if not ids & used)
    partial = sum(allocated_bytes(p) for p in rt.images.partial_downloads())
    return partial + blobs + sum(allocated_bytes(rt.images.rootfs_path(image))
                                 for image_id, image in images.items() if image_id not in used)


def _usage(kind: str, total: int, active: int, size: int, reclaimable: int) -> dict[str, Any]:
    return {"type": kind, "total": total, "active": active, "size": size,
            "reclaimable": reclaimable}


system.add_command(info)  # (docker's `system info` is `info`)
