"""boxlite save: images as one tar (docker save's format), for `load` elsewhere."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import click

from boxlite_cli.cli.completion import complete_image
from boxlite_cli.cli.context import CliContext, activity, pass_cli
from boxlite_cli.errors import OutputUnwritable, UsageError
from boxlite_cli.outfile import written_whole


@click.command()
@click.option("-o", "--output", metavar="FILE", type=click.Path(),
              help="Write to FILE (replaced whole once written) instead of standard output.")
@click.argument("images", nargs=-1, required=True, shell_complete=complete_image)
@pass_cli
def save(cli: CliContext, output: str | None, images: tuple[str, ...]) -> int:
    """Save IMAGES (references or ids) as one tar, to load elsewhere.

    The tar is what `docker save` writes: an OCI image layout with docker's
    manifest.json, so `docker load`, `podman load` and `boxlite load` read it. Each
    layer is in it once, as pulled (compressed). An image given by id is saved without
    a name.
    """
    ops = cli.runtime.image_ops
    ops.to_save(images)  # (a name that is not here fails before anything is written)
    if output in (None, "", "-"):  # (an empty -o is standard output too, as docker's)
        if os.isatty(1):
            raise UsageError("refusing to write the images to a terminal",
                             hint="redirect standard output, or use -o FILE")
        try:
            with os.fdopen(os.dup(1), "wb") as out:
                ops.save(images, out)
        except OSError as e:
            if e.errno in (errno.EBADF, errno.EINVAL):
                raise UsageError("cannot write to standard output: it is not open for "
                                 "writing", hint="give a file: -o FILE") from e
            if e.filename is None:  # (a write's: a full disk is where it went, not ours)
                raise OutputUnwritable(e) from e
            raise
        return 0
    assert output is not None
    with activity(f"Saving to {output}"), written_whole(Path(output)) as out:
        ops.save(images, out)
    return 0
