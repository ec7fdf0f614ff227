"""boxlite image history: how an image was made, layer by layer (its config's history)."""

from __future__ import annotations

from typing import Any

import click

from boxlite_cli.cli.completion import complete_image
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.images import short_id
from boxlite_cli.cli.output import (
    ago,
    go_time,
    human_size,
    print_json,
    print_lines,
    print_table,
    template_format_option,
)
from boxlite_cli.errors import NotFound
from boxlite_cli.oci.store import Image, rfc3339_time

CREATED_BY_WIDTH = 45  # docker's, without --no-trunc


def history_rows(image: Image, layers: list[int]) -> list[dict[str, Any]]:
    """The image's history, newest first, each step with the size of the layer it
    made (`layers`: each layer's, in order; 0 for a step that made none); an image
    without a history has a row a layer."""
    history = image.config.get("history")
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        history = [{} for _ in layers]
    rows = []
    sizes = iter(layers)
    for step in history:
        size = 0 if step.get("empty_layer") else next(sizes, 0)
        rows.append({"created": step.get("created"),
                     "created_by": str(step.get("created_by") or ""),
                     "comment": str(step.get("comment") or ""), "size": size})
    rows.reverse()
    return rows


def _shown(text: str, no_trunc: bool) -> str:
    text = " ".join(text.split())  # (a Dockerfile's RUN lines, on one line)
    if no_trunc or len(text) <= CREATED_BY_WIDTH:
        return text
    return text[:CREATED_BY_WIDTH - 3] + "..."


@click.command("history")
@click.option("-H", "--human/--no-human", default=True, show_default="--human",
              help="Sizes and times for people (120MB, 2 days ago).")
@click.option("--no-trunc", is_flag=True, help="Do not shorten ids and commands.")
@click.option("-q", "--quiet", is_flag=True, help="Only print the image id.")
@template_format_option("{{.CreatedBy}} {{.Size}}")
@click.argument("image_ref", metavar="IMAGE", shell_complete=complete_image)
@pass_cli
def history(cli: CliContext, human: bool, no_trunc: bool, quiet: bool, fmt: str,
            image_ref: str) -> int:
    """Show how IMAGE was made: each step of its history, newest first, with the size
    of the layer it made."""
    image = cli.runtime.image_ops.find(image_ref)
    if image is None:
        raise NotFound(f"no such image: {image_ref}")
    rows = history_rows(image, cli.runtime.images.layer_sizes(image))
    ids = [short_id(image, no_trunc), *["<missing>"] * (len(rows) - 1)]
    if quiet and fmt == "table":
        click.echo(ids[0])
    elif fmt == "json":
        print_json([{"id": image.id if n == 0 else None, **row} for n, row in enumerate(rows)])
    elif fmt != "table":
        print_lines(fmt, [{
            "ID": i, "CreatedSince": ago(rfc3339_time(r["created"])) or "N/A",
            "CreatedAt": go_time(rfc3339_time(r["created"])),
            "CreatedBy": _shown(r["created_by"], no_trunc),
            "Size": human_size(r["size"]) if human else str(r["size"]),
            "Comment": r["comment"]} for i, r in zip(ids, rows, strict=True)],
            {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY"})
    else:
        print_table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], [
            [i, (ago(rfc3339_time(r["created"])) or "N/A") if human else (r["created"] or ""),
             _shown(r["created_by"], no_trunc),
             human_size(r["size"]) if human else str(r["size"]), r["comment"]]
            for i, r in zip(ids, rows, strict=True)])
    return 0
