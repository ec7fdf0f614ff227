"""boxlite push: an image of the store to its registry."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_image
from boxlite_cli.cli.context import CliContext, activity, pass_cli


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.argument("name", metavar="NAME[:TAG]", shell_complete=complete_image)
@pass_cli
def push(cli: CliContext, quiet: bool, name: str) -> int:
    """Push image NAME[:TAG] to its registry (docker.io when NAME names none).

    The blobs the repository lacks go up, then the manifest as it is here, so the
    image keeps its digest. Credentials come as for pull (boxlite login, docker's
    config). Name the image for the registry first: boxlite tag IMAGE
    registry.example.com/team/app:1.
    """
    ops = cli.runtime.image_ops
    reference, image = ops.pushable(name)  # (one that is not here: said before anything)
    config_digest = image.manifest["config"]["digest"]

    def say(line: str) -> None:
        if not quiet:
            click.echo(line)

    say(f"The push refers to repository [{reference.name}]")

    def report(digest: str, existed: bool) -> None:
        if digest != config_digest:  # (docker's lines are the layers' alone)
            say(f"{digest[7:19]}: {'Layer already exists' if existed else 'Pushed'}")

    with activity(f"Pushing {name}"):
        result = ops.push(name, report)
    say(f"{result.reference.tag}: digest: {result.digest} size: {result.size}")
    return 0
