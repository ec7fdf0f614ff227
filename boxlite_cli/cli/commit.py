"""boxlite commit: a new image of a box's changes."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, activity, pass_cli


@click.command()
@click.option("-a", "--author", default="", metavar="AUTHOR",
              help='The image\'s author (e.g. "Jane <jane@example.com>").')
@click.option("-m", "--message", default="", metavar="MESSAGE",
              help="A comment kept in the image's history.")
@click.option("-c", "--change", "changes", multiple=True, metavar="INSTRUCTION",
              help="A Dockerfile instruction for the image's config: CMD, ENTRYPOINT, ENV, "
                   "EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR.")
@click.option("-p/-P", "--pause/--no-pause", default=True, show_default="--pause",
              help="Freeze a running box's file system while it is read (its writes wait), "
                   "for a consistent image.")
@click.argument("box", shell_complete=complete_box)
@click.argument("name", metavar="REPOSITORY[:TAG]")
@pass_cli
def commit(cli: CliContext, author: str, message: str, changes: tuple[str, ...], pause: bool,
           box: str, name: str) -> int:
    """Make image REPOSITORY[:TAG] of BOX's changes; prints its id.

    The image is BOX's image with one more layer: what BOX added, changed or removed
    on its root file system (not its volumes or tmpfs mounts, nor /etc/hosts,
    /etc/hostname and /etc/resolv.conf), and BOX's command, environment, user,
    working directory, labels, ports and health check as its config. BOX may be
    running or stopped.
    """
    from boxlite_cli.runtime.commit import commit as commit_box

    with activity(f"Committing {box}"):
        image = commit_box(cli.runtime, box, name, author=author, message=message,
                           changes=changes, pause=pause)
    click.echo(image.id)
    return 0
