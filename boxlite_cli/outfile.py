"""A file written whole or not at all: the output of `save` (and such)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from boxlite_cli.errors import DiskError, UsageError


def _hidden(out: Path, what: str) -> Path:
    return out.parent / f".{out.name}.boxlite-{what}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def written_whole(out: Path) -> Iterator[IO[bytes]]:
    """A file to write, which becomes `out` (replacing one there, as `docker save -o`
    does) once the block ends without an error, synced. It is unnamed until then where
    the file system can (O_TMPFILE: a kill leaves nothing), else a hidden partial file
    beside `out`, removed on failure."""
    out = Path(os.path.abspath(out))
    if out.is_dir():
        raise UsageError(f"{out} is a directory", hint="name the file to write")
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: no such directory {out.parent}")
    partial: Path | None = None
    try:
        fd = os.open(out.parent, os.O_TMPFILE | os.O_WRONLY, 0o644)
    except OSError:
        partial = _hidden(out, "partial")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as e:
            raise UsageError(f"cannot write {out}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                yield f
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskError(f"No space left on device while writing {out}",
                                    hint="free some disk space and try again") from e
                raise
            if partial is None:  # (linkat names an O_TMPFILE file: then a rename)
                partial = _hidden(out, "done")
                # (os.link calls linkat(AT_SYMLINK_FOLLOW) only given a directory fd)
                root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.link(f"/proc/self/fd/{f.fileno()}", partial, src_dir_fd=root,
                            follow_symlinks=True)
                finally:
                    os.close(root)
            os.replace(partial, out)
            partial = None
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
