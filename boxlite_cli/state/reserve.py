"""A little disk space a box's shim keeps aside (a file of its own, in the box's
directory) for the writes that must not fail on a full disk: the box's state, which
says how its run ended. Without it, a full disk made the shim die writing that, and the
box said "the shim died unexpectedly" whatever had happened."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path

RESERVE_BYTES = 256 << 10  # (a state file is a few KiB; each write needs room for two)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def keep_reserve(path: Path) -> None:
    """Set the reserve aside at `path`, unless it is there (nothing on a full disk)."""
    if path.exists():
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()


def written_with_reserve(write: Callable[[], None], reserve: Path) -> None:
    """`write()`; on a full disk, once more with the reserve given back to it."""
    try:
        write()
    except OSError as e:
        if e.errno not in NO_SPACE or not reserve.exists():
            raise
        reserve.unlink(missing_ok=True)
        write()
