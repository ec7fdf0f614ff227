"""boxlite images: list the local images."""

from __future__ import annotations

import click

from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import format_option, human_size, print_json, print_table


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Only print image ids.")
@format_option
@pass_cli
def images(cli: CliContext, quiet: bool, fmt: str) -> int:
    """List the images in the local store."""
    items = cli.runtime.images.all()
    if quiet:
        for image in items:
            click.echo(image.id.split(":", 1)[1][:12])
    elif fmt == "json":
        print_json([{"reference": str(i.reference), "id": i.id, "digest": i.manifest_digest,
                     "size": i.size} for i in items])
    else:
        rows = []
        for i in items:
            ref = i.reference
            repo = ref.short.rsplit(":", 1)[0] if ref.tag else ref.short
            rows.append([repo, ref.tag or "<none>", i.id.split(":", 1)[1][:12], human_size(i.size)])
        print_table(["REPOSITORY", "TAG", "IMAGE ID", "SIZE"], rows)
    return 0
