"""boxlite image inspect: an image's manifest digest, config and layers, as JSON."""

from __future__ import annotations

from typing import Any

import click

from boxlite_cli.cli.completion import complete_image
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import print_records
from boxlite_cli.errors import NotFound
from boxlite_cli.oci.reference import Reference
from boxlite_cli.oci.store import Image

# The keys docker's image inspect always has in Config (an OCI config leaves out empty
# ones), empty as docker's templates print them (`map[]`, `[]`)
IMAGE_CONFIG_DEFAULTS: dict[str, Any] = {
    "User": "", "ExposedPorts": {}, "Env": [], "Cmd": [], "Volumes": {}, "WorkingDir": "",
    "Entrypoint": [], "OnBuild": [], "Labels": {}, "StopSignal": "",
}


def image_record(image: Image, names: list[Reference], size: int) -> dict[str, Any]:
    """docker's field names where they exist; `names` are every store key of the image."""
    cfg = image.config
    named = [n for n in names if not n.unnamed]
    return {
        "Id": image.id,
        "RepoTags": sorted({n.short for n in named if n.tag and not n.digest}),
        # (where it was pulled from or pushed to, by digest: none for one only made or
        # loaded here, as docker's)
        "RepoDigests": sorted({f"{n.name}@{n.digest}" for n in named if n.digest}),
        "Comment": cfg.get("comment") or "",
        "Created": cfg.get("created"),
        "Author": cfg.get("author") or "",
        "Architecture": cfg.get("architecture"),
        "Os": cfg.get("os"),
        "Size": size,  # (its layers' files, as docker's: not the compressed download)
        "Config": {**IMAGE_CONFIG_DEFAULTS, **image.container_config},
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
    }


def inspected_image(cli: CliContext, ref: str) -> dict[str, Any]:
    """`image inspect`'s record of the image `ref` names."""
    image, names = lookup_with_names(cli, ref)
    return image_record(image, names, cli.runtime.images.content_size(image))


def lookup_with_names(cli: CliContext, ref: str) -> tuple[Image, list[Reference]]:
    """The image `ref` names (a reference, else an image id or a prefix of one), and
    every reference the store has for it."""
    store = cli.runtime.images
    image = cli.runtime.image_ops.find(ref)
    if image is None:
        raise NotFound(f"no such image: {ref}")
    names = [i.reference for i in store.all_references() if i.id == image.id]
    return image, names


@click.command("inspect")
@click.option("-f", "--format", "fmt", default="json", show_default=True,
              help="'json', or a template such as '{{.Config.Cmd}}'.")
@click.argument("images", nargs=-1, required=True, shell_complete=complete_image)
@pass_cli
def image_inspect(cli: CliContext, fmt: str, images: tuple[str, ...]) -> int:
    """Print the record of one or more images."""
    out = [inspected_image(cli, ref) for ref in images]
    print_records(fmt, out)
    return 0
