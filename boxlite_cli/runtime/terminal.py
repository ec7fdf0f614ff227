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
# Ctrl-Z, and the `kill -CONT` or `fg` after it: a process with no terminal of its own
# gets them too (docker's sig-proxy forwards them), rather than this command stopping
# while the shim writes the box's output on into the terminal. A SIGTSTP handler of the
# process runs; its default action (stop) does not: the box's processes have no job
# control (an orphaned process group, as under docker, whose PID 1 ignores it too).
PROXIED_SIGNALS = (*FORWARDED_SIGNALS, signal.SIGTSTP, signal.SIGCONT)
# A CI step's timeout, a closed terminal: while a box starts they end the start, as
# Ctrl-C does (the box is stopped, `--rm` removes it: the command never runs), instead
# of the CLI dying and leaving the box to run unattended; what a tty session forwards
# besides the window size.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# Seconds a process has to end on a forwarded ENDING_SIGNALS before a session that does
# not wait on it longer ends (a tty's, an exec's: docker's CLI ends at once), 128 + N
ENDING_GRACE_S = 3.0


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


class StartSignals:
    """ENDING_SIGNALS of a foreground start (run, start -a), for forwarding_signals:
    until the box runs they end the start (interrupt); from then on they are `held`
    for its process (attach_started gives them to it), or, not `proxy` (run
    --no-sig-proxy), end this command (the box runs on)."""

    def __init__(self, proxy: bool = True) -> None:
        self.running = False
        self.proxy = proxy
        self.held: list[int] = []

    def __call__(self, signum: int) -> None:
        if not self.running or not self.proxy:
            interrupt(signum)
        self.held.append(signum)


class SignalRelay:
    """For forwarding_signals around asking for a process: the signals that come before
    it runs (its id not known yet) are kept, not lost with this command (the process
    would run on unsignalled, as a CI step's timeout or a runner's kill meant it to
    end), and given to `to(forward)` once it runs; later ones go straight there."""

    def __init__(self) -> None:
        self.held: list[int] = []
        self._forward: Callable[[int], None] | None = None

    def __call__(self, signum: int) -> None:
        if self._forward is None:
            self.held.append(signum)
        else:
            self._forward(signum)

    def to(self, forward: Callable[[int], None]) -> None:
        """The process runs: the signals kept, then all later ones, go to `forward`."""
        self._forward = forward
        held, self.held = self.held, []
        for signum in held:
            forward(signum)


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
