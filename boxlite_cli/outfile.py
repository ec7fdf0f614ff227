"""A file written whole or not at all: the output of `save` (and such)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from boxlite_cli.errors import DiskError, UsageError


def _hidden(out: Path, what: str) -> Path:
    return out.parent / f".{out.name}.boxlite-{what}-{secrets.token_hex(4)}"


def output_path(given: str | os.PathLike[str], what: str = "file") -> Path:
    """The absolute path a file written whole replaces, for `given`: a regular file, or
    nothing yet, in a directory that exists. A link is followed (the file it names is
    replaced, not the link); a directory, a device, a pipe or a socket is refused (a
    rename over `/dev/null` would put a file there)."""
    out = Path(os.path.abspath(given))
    if out.is_symlink():
        out = Path(os.path.realpath(out))
    try:
        mode = out.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise UsageError(f"cannot write {given}: {e.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise UsageError(f"{given} is {kind}", hint=f"name the {what} to write")
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {given}: no such directory {out.parent}")
    return out


@contextlib.contextmanager
def written_whole(out: Path) -> Iterator[IO[bytes]]:
    """A file to write, which becomes `out` (replacing one there, as `docker save -o`
    does) once the block ends without an error, synced. It is unnamed until then where
    the file system can (O_TMPFILE: a kill leaves nothing), else a hidden partial file
    beside `out`, removed on failure."""
    out = output_path(out)
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
