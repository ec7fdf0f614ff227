"""boxlite load: images from a `docker save` tarball or an OCI image layout."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import click

from boxlite_cli.cli.context import CliContext, activity, pass_cli, warn
from boxlite_cli.errors import UsageError
from boxlite_cli.fdio import FdReader
from boxlite_cli.oci.archive import LoadResult


@click.command()
@click.option("-i", "--input", "input_", metavar="FILE", type=click.Path(path_type=Path),
              help="Read from this archive or OCI layout directory instead of standard input.")
@click.option("-q", "--quiet", is_flag=True,
              help="Show no progress (the loaded images' names are still printed, as docker's).")
@pass_cli
def load(cli: CliContext, input_: Path | None, quiet: bool) -> int:
    """Load images from a `docker save` tarball or an OCI image layout.

    FILE is a tar written by `docker save` (or podman/skopeo's docker-archive), an OCI
    image layout directory, or such a layout as a tar; gzip and zstd compression are
    recognised. Images are kept under the names the archive gives them; one it gives
    no name (`save IMAGE_ID` writes none) is kept as `<none>`, by its id.
    """
    images = cli.runtime.image_ops
    result: LoadResult
    if input_ is None or str(input_) == "-":
        if sys.stdin.isatty():
            raise UsageError("requested load from standard input, but it is a terminal",
                             hint="pass the archive with -i FILE, or pipe it in")
        with activity("Loading images from standard input", quiet):
            result = images.load(io.BufferedReader(FdReader(0)))
    else:
        with activity(f"Loading images from {input_}", quiet):
            result = images.load(input_)
    for ref in result.loaded:
        click.echo(f"Loaded image: {ref.short}")
    for image_id in result.unnamed:
        click.echo(f"Loaded image ID: {image_id}")
    for note in result.notes:
        warn(note)
    return 0
