"""The host terminal's size: light (no gRPC), for the options of run, create and exec."""

from __future__ import annotations

import fcntl
import struct
import termios


def terminal_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal on `fd`, or (0, 0) when it is not a terminal."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    except OSError:
        return 0, 0
