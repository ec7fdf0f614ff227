"""boxlite pull: fetch an image from a registry into the local store."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_image
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.options import platform_option


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print only the image reference.")
@platform_option
@click.argument("reference", shell_complete=complete_image)
@pass_cli
def pull(cli: CliContext, quiet: bool, reference: str) -> int:
    """Pull an image (linux/amd64) from a registry.

    REFERENCE is [REGISTRY/]REPOSITORY[:TAG|@DIGEST], as docker reads it (docker.io and
    library/ by default). Credentials come from `boxlite login` or ~/.docker/config.json.
    Plain HTTP is used only for localhost and registries listed in insecure_registries.
    The image is unpacked before it gets its name: one that cannot be is not kept.
    """
    result = cli.runtime.pull(reference)
    ref = result.image.reference
    if not quiet:
        click.echo(f"Digest: {result.repo_digest}")
        status = "Downloaded newer image for" if result.downloaded else "Image is up to date for"
        click.echo(f"Status: {status} {ref.short}")
    click.echo(str(ref))
    return 0
