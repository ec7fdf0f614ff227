"""Deeper accept queues on the ports QEMU's user networking publishes.

libslirp listens on each `hostfwd` port with a backlog of 1: in a burst of
connections (a load test, a browser opening a page's resources), all but the first
two wait in SYN retransmits (1 s, then 3 s...) or time out, where docker's proxy
takes them all. Calling listen() again on a listening socket only changes its
backlog (Linux), so the shim, the VMM's parent, takes a copy of each of the VMM's
listening TCP sockets (pidfd_getfd) and listens on it with SOMAXCONN. Best effort:
a kernel without pidfd_getfd (< 5.6) or a ptrace policy that forbids it leaves the
backlog as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket

SYS_PIDFD_GETFD = 438  # the same number on every architecture
_LIBC = ctypes.CDLL(None, use_errno=True)


def _take_fd(pidfd: int, fd: int) -> int:
    """A copy of `fd` of the process behind `pidfd`; raises OSError."""
    copy = _LIBC.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    if copy < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(copy)


def _socket_fds(pid: int) -> list[int]:
    fds = []
    directory = f"/proc/{pid}/fd"
    for name in os.listdir(directory):
        with contextlib.suppress(OSError):
            if os.readlink(f"{directory}/{name}").startswith("socket:"):
                fds.append(int(name))
    return fds


def widen_listen_backlogs(pid: int, backlog: int = socket.SOMAXCONN) -> int:
    """Listen again with `backlog` on every listening TCP socket of process `pid`
    (one we may ptrace: our child); how many. Raises OSError when its sockets
    cannot be read at all."""
    pidfd = os.pidfd_open(pid)
    widened = 0
    try:
        for fd in _socket_fds(pid):
            try:
                copy = _take_fd(pidfd, fd)
            except OSError as e:
                if e.errno in (errno.EPERM, errno.ENOSYS):
                    raise  # (the same for every descriptor)
                continue  # closed meanwhile
            sock = socket.socket(fileno=copy)
            try:
                if (sock.family in (socket.AF_INET, socket.AF_INET6)
                        and sock.type == socket.SOCK_STREAM
                        and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
                    sock.listen(backlog)
                    widened += 1
            finally:
                sock.close()  # our copy only: the VMM's descriptor stays open
    finally:
        os.close(pidfd)
    return widened
