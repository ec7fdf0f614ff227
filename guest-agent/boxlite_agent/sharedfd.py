"""An fd used by several threads that is closed once nobody uses it any more."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SharedFd:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._users = 0
        self._closing = False
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[int | None]:
        """Yields the fd, or None once it was closed."""
        with self._lock:
            if self._closing:
                fd = None
            else:
                self._users += 1
                fd = self._fd
        try:
            yield fd
        finally:
            if fd is not None:
                with self._lock:
                    self._users -= 1
                    last = self._closing and self._users == 0
                if last:
                    os.close(fd)

    def close(self) -> None:
        """Close now, or when the last user finishes."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            now = self._users == 0
        if now:
            os.close(self._fd)

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closing
