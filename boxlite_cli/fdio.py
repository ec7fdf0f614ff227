"""Small file-descriptor helpers shared by the CLI side and the shim (the standard library only)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import select
import stat
import threading
from collections.abc import Iterable
from typing import Any

GIVE_UP_POLL_S = 0.25


def same_file(a: int, b: int) -> bool:
    """Whether two fds are one file: a shell's `2>&1`, one terminal, one pipe."""
    try:
        first, second = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def read_some(fd: int, size: int) -> bytes:
    """Up to `size` bytes of `fd`, b"" at its end only: on a descriptor another process
    left non-blocking (a CI runner's pipe), EAGAIN means wait, not end of input."""
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            select.select([fd], [], [])


class FdReader(io.RawIOBase):
    """A readable stream of `fd` (not closed with it) that reads with read_some: stdin
    for `load -`, `import -` and `cp -`, whatever its O_NONBLOCK."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = read_some(self.fd, len(buffer))
        buffer[:len(data)] = data
        return len(data)


def write_all(fd: int, data: bytes, give_up: threading.Event | None = None) -> bool:
    """Write everything; False once the reader is gone (EPIPE), or, on a non-blocking
    `fd` that stays full, once `give_up` is set."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            if give_up is None:
                select.select([], [fd], [])
                continue
            while not select.select([], [fd], [], GIVE_UP_POLL_S)[1]:
                if give_up.is_set():
                    return False
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


def release_fds(fds: Iterable[int]) -> None:
    """Let go of what `fds` are open on (a pipe's readers see its end once no one else
    holds it): each becomes /dev/null in one step (dup2), so a thread still writing
    to one writes nowhere, never into a file that took its number."""
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.dup2(null, fd, inheritable=False)
    finally:
        os.close(null)


SPARSE_BLOCK = 64 << 10
_ZERO_BLOCK = bytes(SPARSE_BLOCK)


def write_sparse(fd: int, data: bytes) -> None:
    """Write `data` at the file offset of regular file `fd`, skipping (seeking over)
    each all-zero 64 KiB block: a run of zeros takes no disk space. The caller sets
    the file's size at the end (os.ftruncate), as a hole at the end has none."""
    view = memoryview(data)
    for at in range(0, len(view), SPARSE_BLOCK):
        block = view[at:at + SPARSE_BLOCK]
        if len(block) == SPARSE_BLOCK and block == _ZERO_BLOCK:
            os.lseek(fd, SPARSE_BLOCK, os.SEEK_CUR)
            continue
        while block:
            block = block[os.write(fd, block):]


def own_nonblocking(fd: int) -> int:
    """A descriptor of `fd`'s pipe or terminal that is ours alone, non-blocking (a
    reopen of /proc/self/fd: a new open file, so the flag does not reach the process
    that shares `fd`, such as a shell on that terminal); `fd` itself for anything else
    (a regular file never blocks; a socket cannot be reopened). Close it if not `fd`."""
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            return fd
        return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC
                       | os.O_NOCTTY)
    except OSError:
        return fd
