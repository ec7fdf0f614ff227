"""Output pipes whose reader is done while writers may remain: an exec's background
child (`sh -c 'server &'`) still writing after the exec's process exited.

Closing the read end would end such a child with SIGPIPE at its next write, or fail
that write with EPIPE (a Python server's log line, then every request). Instead one
thread reads and drops what they write, and closes each pipe once its last writer is
gone: a background child of an exec lives on as a detached one would.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading

READ_SIZE = 65536


class Drainer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoll: select.epoll | None = None

    def adopt(self, fd: int) -> None:
        """Drain `fd` (the read end of a pipe) until its writers are gone; ours now."""
        os.set_blocking(fd, False)
        with self._lock:
            if self._epoll is None:
                self._epoll = select.epoll()
                threading.Thread(target=self._run, args=(self._epoll,), name="drain",
                                 daemon=True).start()
            self._epoll.register(fd, select.EPOLLIN)

    def _run(self, epoll: select.epoll) -> None:
        while True:
            for fd, _ in epoll.poll():
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # every writer is gone
                    with contextlib.suppress(OSError):
                        epoll.unregister(fd)
                    os.close(fd)


DRAINER = Drainer()
