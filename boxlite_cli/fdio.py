"""Small file-descriptor helpers shared by the CLI side and the shim (no imports beyond os)."""

from __future__ import annotations

import errno
import os
import select


def write_all(fd: int, data: bytes) -> bool:
    """Write everything; False once the reader is gone (EPIPE)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EBADF):
                return False
            raise
        view = view[n:]
    return True


def reader_gone(write_fd: int) -> bool:
    """True when nobody holds the read end of the pipe `write_fd` writes to any more."""
    poller = select.poll()
    poller.register(write_fd, 0)  # POLLERR and POLLHUP are always reported
    return any(event & (select.POLLERR | select.POLLHUP | select.POLLNVAL)
               for _, event in poller.poll(0))
