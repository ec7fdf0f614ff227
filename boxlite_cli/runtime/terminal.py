"""The host terminal's size and the signals a foreground session forwards to its
process: light (no gRPC), for the options of run, create and exec."""

from __future__ import annotations

import fcntl
import signal
import struct
import termios

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)


def terminal_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal on `fd`, or (0, 0) when it is not a terminal."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    except OSError:
        return 0, 0
