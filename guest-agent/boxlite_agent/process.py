"""One started process: its output readers, its stdin, its exit status.

The output of every process goes through an OutputBuffer (see outbuf.py). A reader
thread per output fd moves chunks of up to 64 KiB into it; EOF (or EIO from a pty
master) closes that stream. Once the process has exited, a reader takes what was
in the pipe at that moment (FIONREAD; a pty's, what may still be in its flip buffers
too) and stops, as it does when it sees no data for
EXIT_GRACE_S: a background child that kept the pipe open, idle or writing on, must
not keep the exec "running" forever (docker ends a container's output when its main
process ends, too). A pipe whose host reader went away (close_output) is closed at
once (its reader is woken through an eventfd): the process's next write into it
fails with EPIPE, as into a host pipe whose reader exited (a tty is hung up). A
watcher thread reaps the process, applies the timeout, waits for the readers, and
then marks the exec done.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from boxlite_agent.drain import DRAINER
from boxlite_agent.errors import FailedPrecondition
from boxlite_agent.outbuf import OutputBuffer
from boxlite_agent.ptys import set_window_size
from boxlite_agent.sharedfd import SharedFd
from boxlite_agent.spawn import STDERR, STDOUT, Spawned
from boxlite_agent.threads import THREADS, Task

READ_SIZE = 64 * 1024
POLL_MS = 500
POLL_MAX_MS = 2**31 - 1
EXIT_GRACE_S = 0.25
# What a reader still takes once the process has exited when FIONREAD cannot say
# what was in the pipe then (a pipe holds 64 KiB by default, 1 MiB at most).
EXIT_DRAIN_BYTES = 1 << 20
# A pty's output can be on its way still when its process has exited: in the tty's
# flip buffers, which FIONREAD does not count (the kernel holds up to 64 KiB there,
# TTYB_DEFAULT_MEM_LIMIT). A reader of a pty master takes that much more, or reads to
# its EIO (every slave closed), so that the end of a `-t` process's output is kept.
PTY_IN_FLIGHT_BYTES = 64 * 1024
TIMEOUT_EXIT_CODE = 124


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int
    signal: int = 0
    timed_out: bool = False


def exit_status(returncode: int, timed_out: bool) -> ExitStatus:
    """Docker-style status from a Popen return code (negative: killed by a signal)."""
    if returncode >= 0:
        return ExitStatus(returncode)
    if timed_out:
        return ExitStatus(TIMEOUT_EXIT_CODE, -returncode, True)
    return ExitStatus(128 - returncode, -returncode)


def _pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def _pending(fd: int) -> int:
    """The bytes waiting in the pipe or pty `fd` (FIONREAD)."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return EXIT_DRAIN_BYTES


class Execution:
    """A process started by Exec (or the record of one that failed to start)."""

    def __init__(
        self,
        exec_id: str,
        spawned: Spawned | None,
        hold_output: bool = False,
        timeout_s: float = 0.0,
        on_done: Callable[[Execution], None] | None = None,
        failed: ExitStatus | None = None,
        stdin: bool = False,
        release_on_detach: bool = False,
    ) -> None:
        self.id = exec_id
        # Input is accepted if the exec was started with stdin (pipe or tty).
        self.accepts_input = stdin and spawned is not None
        self._on_done = on_done
        self._exited = threading.Event()
        self._done = threading.Event()
        self._status: ExitStatus | None = None
        self._timed_out = False
        self._signal_lock = threading.Lock()
        self._input_lock = threading.Lock()
        self._readers: list[Task] = []
        self._master: SharedFd | None = None
        self._stdin: SharedFd | None = None
        self._wakes: dict[int, int] = {}  # stream -> eventfd that stops its pipe's reader
        self._wakes_lock = threading.Lock()
        if spawned is None:  # a process that could not be started
            self.pid = 0
            self.tty = False
            self.output = OutputBuffer(hold=False, streams=())
            self._popen: subprocess.Popen[bytes] | None = None
            self._pidfd: int | None = None
            self._status = failed or ExitStatus(126)
            self._exited.set()
            self._done.set()
            return
        self._popen = spawned.popen
        self.pid = spawned.popen.pid
        self.tty = spawned.master is not None
        self._pidfd = _pidfd_open(self.pid)
        self._timeout = timeout_s
        self.output = OutputBuffer(hold_output, streams=[s for s, _ in spawned.outputs],
                                   release_on_detach=release_on_detach)
        if spawned.master is not None:
            self._master = SharedFd(spawned.master)
        if spawned.stdin is not None:
            self._stdin = SharedFd(spawned.stdin)
        for stream, fd in spawned.outputs:
            self._wakes[stream] = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            name = f"exec-{exec_id}-{'out' if stream == STDOUT else 'err'}"
            t = THREADS.start(self._read, stream, fd, name=name)
            self._readers.append(t)
        THREADS.start(self._watch, name=f"exec-{exec_id}-wait")

    @classmethod
    def failed(cls, exec_id: str, exit_code: int) -> Execution:
        return cls(exec_id, None, failed=ExitStatus(exit_code))

    # -- state -------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The process exited and its output readers finished."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> ExitStatus | None:
        """The exit status once done, or None if ``timeout`` passed first."""
        if not self._done.wait(timeout):
            return None
        return self._status

    # -- output ------------------------------------------------------------------

    def _read(self, stream: int, fd: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        wake = self._wakes.get(stream)
        if wake is not None:
            poller.register(wake, select.POLLIN)
        hang_up = False
        background = False  # a background child still holds the pipe: drain it, not close it
        left: int | None = None  # once the process exited: what is still its output
        try:
            while True:
                exited = self._exited.is_set()
                if exited and left is None:
                    left = _pending(fd) + (PTY_IN_FLIGHT_BYTES if self._master is not None else 0)
                if left is not None and left <= 0:
                    background = True
                    break  # the rest is a background child's, writing on
                events = poller.poll(EXIT_GRACE_S * 1000 if exited else POLL_MS)
                if not events:
                    if exited:
                        background = True
                        break  # idle after exit: a background child holds the fd
                    continue
                if any(ready == wake for ready, _ in events):
                    hang_up = True  # close_output: nobody reads this stream any more
                    break
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError as e:
                    if e.errno == errno.EIO:  # pty master: every slave fd is closed
                        break
                    raise
                if not data:
                    break
                if left is not None:
                    left -= len(data)
                self.output.put(stream, data)
        finally:
            self.output.close(stream)
            if self._master is None and background:
                DRAINER.adopt(fd)  # (closed, it would end the child at its next write)
            elif self._master is None:
                os.close(fd)
            elif hang_up:  # the terminal goes away: its writers get EIO from now on
                self._master.close()
            with self._wakes_lock:
                if (wake := self._wakes.pop(stream, None)) is not None:
                    os.close(wake)

    # -- lifetime ----------------------------------------------------------------

    def _wait_exit(self, popen: subprocess.Popen[bytes]) -> int:
        if self._timeout <= 0:
            return popen.wait()
        if self._pidfd is not None:
            poller = select.poll()
            poller.register(self._pidfd, select.POLLIN)
            deadline = time.monotonic() + self._timeout
            while (left := deadline - time.monotonic()) > 0:
                # (poll takes a C int of milliseconds: ~24.8 days at most per call)
                if poller.poll(min(left * 1000, POLL_MAX_MS)):
                    return popen.wait()
        else:
            try:
                return popen.wait(self._timeout)
            except subprocess.TimeoutExpired:
                pass
        self._timed_out = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        return popen.wait()

    def _watch(self) -> None:
        assert self._popen is not None
        returncode = self._wait_exit(self._popen)
        with self._signal_lock:
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        self._exited.set()
        for t in self._readers:
            t.join()
        for shared in (self._master, self._stdin):
            if shared is not None:
                shared.close()
        self._status = exit_status(returncode, self._timed_out)
        self._done.set()
        if self._on_done is not None:
            self._on_done(self)

    # -- control -----------------------------------------------------------------

    def signal(self, signum: int, group: bool = False) -> None:
        """Deliver ``signum`` to the process (``group``: to its process group, which it
        leads: what it started gets it too); a process that is gone is not an error."""
        with self._signal_lock:
            if self._popen is None or self._exited.is_set():
                return
            try:
                if group:  # (it runs, not reaped: its pid is its group's id still)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.pid, signum)
                        return
                if self._pidfd is not None:
                    signal.pidfd_send_signal(self._pidfd, signum)
                else:
                    self._popen.send_signal(signum)
            except ProcessLookupError:
                pass

    def close_output(self, stream: int) -> None:
        """The host's reader of ``stream`` went away: close our end of its pipe (see the
        module doc). A tty is hung up instead, as when a terminal goes away: SIGHUP to
        the process (its session leader), its output is dropped and the terminal
        closed (a process that ignores SIGHUP gets EIO from its next write)."""
        if self.tty:
            stream = STDOUT
            self.signal(signal.SIGHUP)
        with self._wakes_lock:
            wake = self._wakes.get(stream)
            if wake is None:
                return
            self.output.drop(stream)
            os.eventfd_write(wake, 1)

    def kill_group(self) -> None:
        """SIGKILL the process group (shutdown)."""
        if self._popen is not None and not self._exited.is_set():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def resize(self, rows: int, cols: int) -> None:
        if self._master is None:
            raise FailedPrecondition(f"exec {self.id} has no tty")
        with self._master.use() as fd:
            if fd is not None:
                with contextlib.suppress(OSError):
                    set_window_size(fd, rows, cols)

    def write_input(self, data: bytes, alive: Callable[[], bool] = lambda: True) -> None:
        """Write to the process's stdin; data for a process that is gone is dropped."""
        target = self._master if self._master is not None else self._stdin
        if target is None or not data:
            return
        with self._input_lock, target.use() as fd:
            if fd is None:
                return
            view = memoryview(data)
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    if not alive() or self._done.is_set():
                        return
                    poller.poll(200)
                except OSError:  # EPIPE, EIO: the reader is gone
                    return

    def close_input(self) -> None:
        """EOF on stdin: close the pipe, or type ^D on a tty."""
        if self._master is not None:
            self.write_input(b"\x04")
        elif self._stdin is not None:
            self._stdin.close()

    def discard(self) -> None:
        """Dropped from the table: never block its readers again."""
        self.output.release()


__all__ = ["STDERR", "STDOUT", "Execution", "ExitStatus", "exit_status"]
