"""boxlite cp: copy files and directories between the host and a box."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_copy_end
from boxlite_cli.cli.context import CliContext, pass_cli, warn
from boxlite_cli.cli.errors import ending_on_signals


@click.command("cp")
@click.option("-L", "--follow-link", is_flag=True, help="Follow a symbolic link given as SRC.")
@click.option("-a", "--archive", is_flag=True,
              help="Keep uid/gid (otherwise files copied in are owned by root, files copied "
                   "out by you).")
@click.argument("src", metavar="SRC", shell_complete=complete_copy_end)
@click.argument("dst", metavar="DST", shell_complete=complete_copy_end)
@pass_cli
def cp(cli: CliContext, src: str, dst: str, follow_link: bool, archive: bool) -> int:
    """Copy between the host and a box: one of SRC and DST is BOX:PATH.

    docker cp's rules: a directory is copied with its contents (SRC/. copies only the
    contents); a file lands inside an existing directory or replaces/creates DST.
    `-` as SRC extracts a tar (plain, gzip, bzip2, xz or zstd) from stdin into the box
    directory DST; `-` as DST writes
    a tar of SRC to stdout. Stopped boxes work too: their VM boots briefly without
    the main process.
    """
    from boxlite_cli.runtime.copy import CopyOptions, copy_from_box, copy_to_box, parse_cp_args

    args = parse_cp_args(src, dst)
    opts = CopyOptions(follow_link=follow_link, archive=archive)
    with ending_on_signals():  # (a TERM from `timeout` or CI leaves no half copy)
        if args.to_box:
            copy_to_box(cli.runtime, args, opts, warn=warn)
        else:
            copy_from_box(cli.runtime, args, opts, warn=warn)
    return 0
