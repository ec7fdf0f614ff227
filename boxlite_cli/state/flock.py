"""A tiny flock(2) lock: importing the PyPI file-lock package (it pulls in asyncio) costs 70-100 ms."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from types import TracebackType

_FIRST_SLEEP_S = 0.001
_MAX_SLEEP_S = 0.05


class Timeout(TimeoutError):
    """The lock was not acquired within the timeout."""

    def __init__(self, lock_file: str, timeout: float) -> None:
        super().__init__(f"could not acquire the lock on {lock_file} within {timeout:g} s")
        self.lock_file = lock_file
        self.timeout = timeout


class FileLock:
    """An exclusive, reentrant (per instance) lock on `path`, held with flock(2).

    `timeout` (s): 0 tries once, negative waits forever. Missing parent directories
    are created (unless `create_parents` is false: then FileNotFoundError); the lock
    file stays on disk."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = -1,
                 create_parents: bool = True) -> None:
        self.lock_file = os.fspath(path)
        self.timeout = timeout
        self.create_parents = create_parents
        self._fd: int | None = None
        self._count = 0
        self._guard = threading.Lock()

    @property
    def is_locked(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float | None = None) -> FileLock:
        """Take the lock (or one more level of it); raise `Timeout` past `timeout` s."""
        if timeout is None:
            timeout = self.timeout
        with self._guard:
            if self._count > 0:
                self._count += 1
                return self
            self._fd = self._lock(timeout)
            self._count = 1
        return self

    def _lock(self, timeout: float) -> int:
        if self.create_parents:
            os.makedirs(os.path.dirname(self.lock_file) or ".", exist_ok=True)  # as filelock does
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + timeout
            sleep = _FIRST_SLEEP_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    pass
                now = time.monotonic()
                if timeout >= 0 and now >= deadline:
                    raise Timeout(self.lock_file, timeout)
                time.sleep(sleep if timeout < 0 else min(sleep, max(deadline - now, 0.0)))
                sleep = min(sleep * 2, _MAX_SLEEP_S)
        except BaseException:
            os.close(fd)
            raise

    def release(self) -> None:
        """Drop one level of the lock; unlock at the last. Releasing an unheld lock does nothing."""
        with self._guard:
            if self._count == 0:
                return
            self._count -= 1
            if self._count > 0 or self._fd is None:
                return
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FileLock({self.lock_file!r}, locked={self.is_locked})"
