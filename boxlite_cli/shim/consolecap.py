"""A bound on a box's console log (the VM's serial port, which QEMU appends to a file).

Root in a box can write to the serial port (`mknod c 4 64`), as fast as the VMM
emulates it: the file would grow without end. The shim checks it every second; past
CONSOLE_MAX_BYTES, it keeps the last CONSOLE_KEEP_BYTES (what error messages quote:
shim/main.py console_tail), after a line that says so. The VMM appends (O_APPEND), so
its writes land after whatever the file holds."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

CONSOLE_MAX_BYTES = 4 << 20
CONSOLE_KEEP_BYTES = 64 << 10
CHECK_S = 1.0


def trim_console(path: Path, max_bytes: int = CONSOLE_MAX_BYTES,
                 keep_bytes: int = CONSOLE_KEEP_BYTES) -> bool:
    """Cut the file at `path` to its last `keep_bytes` once it is over `max_bytes`;
    True when it was cut. (Bytes the VMM appends during the cut may be lost.)"""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        size = os.fstat(fd).st_size
        if size <= max_bytes:
            return False
        tail = os.pread(fd, keep_bytes, size - keep_bytes)
        os.ftruncate(fd, 0)
        os.write(fd, b"[boxlite: the console log passed %d bytes; its last %d follow]\n"
                 % (max_bytes, len(tail)) + tail)
        return True
    finally:
        os.close(fd)


class ConsoleBound:
    """A daemon thread that keeps trimming `path` until stop()."""

    def __init__(self, path: Path, interval_s: float = CHECK_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="console-bound", daemon=True)

    def start(self) -> ConsoleBound:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            with contextlib.suppress(OSError):
                trim_console(self.path)
