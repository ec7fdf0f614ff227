"""The host terminal's size and the signals a foreground session forwards to its
process: light (no gRPC), for the options of run, create and exec."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import struct
import termios
import threading
import tty
from collections.abc import Callable, Iterator

from boxlite_cli.errors import Interrupted

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2)
# What a foreground `run` keeps for its process while the box starts (a CI step's
# timeout, a closed terminal), instead of dying and leaving the box to run unattended
# (`run -d` ends the start and stops the box instead); what a tty session forwards
# besides the window size. Ctrl-C (SIGINT) still ends a start: `--rm` then removes
# the box.
HELD_WHILE_STARTING = (signal.SIGTERM, signal.SIGHUP)


def terminal_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal on `fd`, or (0, 0) when it is not a terminal."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    except OSError:
        return 0, 0


def interrupt(signum: int) -> None:
    """For forwarding_signals: end the command as Ctrl-C would, with 128 + signum."""
    raise Interrupted(signum)


@contextlib.contextmanager
def forwarding_signals(forward: Callable[[int], None],
                       signals: tuple[signal.Signals, ...] = FORWARDED_SIGNALS
                       ) -> Iterator[None]:
    """While inside: `signals` to this process go to `forward(signum)` (as docker's
    sig-proxy does) instead of ending it. Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, _frame: forward(signum))
                for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def raw_terminal(fd: int, wanted: bool = True) -> Iterator[None]:
    """Raw mode on the terminal `fd` while inside (a tty session's keys all go to the
    box), restored on the way out; nothing when not `wanted` or `fd` is no terminal."""
    if not (wanted and os.isatty(fd)):
        yield
        return
    saved = termios.tcgetattr(fd)
    # TCSANOW, not tty.setraw's TCSAFLUSH: what was typed ahead (a paste, a script
    # feeding the terminal while the box starts) stays to be read, as docker keeps it
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):  # (a terminal that hung up: none to restore)
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
