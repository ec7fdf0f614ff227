"""boxlite diff: what a box changed on its root file system."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, activity, pass_cli
from boxlite_cli.cli.output import format_option, print_json
from boxlite_cli.cli.printable import printable

KIND_CODES = {"C": 0, "A": 1, "D": 2}  # (docker's API: modified, added, deleted)


def json_text(path: str) -> str:
    """A path as JSON text can hold it: bytes that are not UTF-8 as U+FFFD (docker's)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@click.command()
@format_option
@click.argument("box", shell_complete=complete_box)
@pass_cli
def diff(cli: CliContext, fmt: str, box: str) -> int:
    """List what BOX added (A), changed (C) and deleted (D) on its root file system
    since it was made from its image, a path a line, as `docker diff` does.

    A directory something changed in is listed as changed. Volumes, tmpfs mounts and
    /etc/hosts, /etc/hostname and /etc/resolv.conf are not the box's own files and
    are left out (as in `boxlite commit`). BOX may be running or stopped. A name's
    control characters are written as escapes (\\x0a) and its backslashes doubled,
    so a line is one path and no name reads as another. --format
    json: docker's [{"Path": ..., "Kind": 0 changed, 1 added, 2 deleted}]."""
    from boxlite_cli.runtime.diff import diff as box_diff

    with activity(f"Reading {box}'s changes"):
        changes = box_diff(cli.runtime, box)
    if fmt == "json":
        print_json([{"Path": json_text(c.path), "Kind": KIND_CODES[c.kind]} for c in changes])
    else:
        for change in changes:
            # (a box's names may hold escapes or newlines: not to drive the terminal,
            # nor to forge lines)
            click.echo(f"{change.kind} {printable(change.path, unambiguous=True)}")
    return 0
