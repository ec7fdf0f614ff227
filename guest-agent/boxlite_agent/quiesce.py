"""Freezing the container's file system around a disk snapshot (FIFREEZE / FITHAW).

A freeze flushes dirty data and blocks writers until the thaw. The host thaws after
its snapshot; if it never does (it died), a timer thaws on its own.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading

FIFREEZE = 0xC0045877  # _IOWR('X', 119, int)
FITHAW = 0xC0045878  # _IOWR('X', 120, int)
DEFAULT_AUTO_THAW_S = 10.0
MAX_AUTO_THAW_S = 120.0


class Freezer:
    """Freezes one mount point; thread-safe; thaws by itself after a bounded time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._frozen: str | None = None

    def _ioctl(self, path: str, request: int) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, request, 0)
        finally:
            os.close(fd)

    def freeze(self, path: str, auto_thaw_s: float = 0.0) -> None:
        delay = min(auto_thaw_s or DEFAULT_AUTO_THAW_S, MAX_AUTO_THAW_S)
        with self._lock:
            if self._frozen is None:
                self._ioctl(path, FIFREEZE)
                self._frozen = path
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(delay, self.thaw)
            self._timer.daemon = True
            self._timer.start()

    def thaw(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            path, self._frozen = self._frozen, None
            if path is None:
                return
            try:
                self._ioctl(path, FITHAW)
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: not frozen (any more)
                    raise

    @property
    def frozen(self) -> bool:
        return self._frozen is not None
