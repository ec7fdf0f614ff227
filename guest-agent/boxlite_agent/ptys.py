"""Pseudo-terminals for tty execs, allocated from the container's own devpts.

Allocating from ``<rootfs>/dev/pts/ptmx`` (the newinstance devpts Init mounts) makes
``ttyname()`` and ``/dev/pts/N`` inside the container agree; if that fails (no devpts
there, e.g. a rootfs of ``/`` on a host) the agent's own ``os.openpty()`` is used.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios

from boxlite_agent.resolve import open_in_root

TIOCSPTLCK = 0x40045431
TIOCGPTN = 0x80045430
TIOCGPTPEER = 0x5441


def _open_container_pty(root: str) -> tuple[int, int]:
    master = open_in_root(root, "/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        try:
            slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:
            (n,) = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))
            slave = open_in_root(root, f"/dev/pts/{n}", os.O_RDWR | os.O_NOCTTY)
        return master, slave
    except BaseException:
        os.close(master)
        raise


def open_pty(root: str) -> tuple[int, int]:
    """A (master, slave) pair; both close-on-exec."""
    try:
        return _open_container_pty(root)
    except OSError:
        return os.openpty()


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """TIOCSWINSZ; the kernel sends SIGWINCH to the foreground process group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
