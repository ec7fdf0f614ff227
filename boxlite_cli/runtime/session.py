"""A foreground session with a process in a box: output, stdin, terminal, signals."""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

from boxlite_cli.agent.client import AgentClient, ExecResult, InputPump
from boxlite_cli.agent.sink import OutputSink
from boxlite_cli.errors import (
    AgentTimeout,
    BoxliteError,
    Detached,
    OutputLost,
    SignalEndedWait,
    SignalHeld,
)
from boxlite_cli.fdio import read_some
from boxlite_cli.runtime.detachkeys import DetachScanner
from boxlite_cli.runtime.terminal import (
    ENDING_GRACE_S,
    ENDING_SIGNALS,
    FORWARDED_SIGNALS,
    PROXIED_SIGNALS,
    forwarding_signals,
    interrupt,
    raw_terminal,
    terminal_size,
)

# A terminal that hung up: reads and writes fail with these (EIO; ENXIO on some ptys)
HANGUP_ERRNOS = (errno.EIO, errno.ENXIO)


@dataclass
class Session:
    """Streams one exec's output to stdout/stderr until it ends, and returns its status.

    `detach_keys` (a tty session with stdin): typing them ends the session, not the
    process (Session.run raises Detached)."""

    client: AgentClient
    exec_id: str
    stdin: bool = False
    tty: bool = False
    stdin_fd: int = 0
    stdout_fd: int = 1
    stderr_fd: int = 2
    detach_keys: bytes | None = None
    # signals forwarded to the process's group (an exec's: what it started too), not
    # to the process alone (a box's main process, as docker's run)
    group_signals: bool = False
    # False (run --no-sig-proxy): a signal ends the session, not the process (no tty)
    sig_proxy: bool = True
    # signals that came while the process started (SignalRelay): forwarded first
    held_signals: list[int] = field(default_factory=list)
    _result: ExecResult | None = None
    _wait_error: BaseException | None = None
    _control: queue.Queue[tuple[str, int]] = field(default_factory=queue.Queue)
    _output_call: Any = None
    _detached: threading.Event = field(default_factory=threading.Event)
    # seconds the process (a tty's, an exec's) has to end after a SIGTERM or a hang-up
    # forwarded to it, before this session ends without it
    ending_grace_s: float = ENDING_GRACE_S
    # a signal that ended this session, the process not having taken it (yet)
    _undelivered: SignalEndedWait | None = None
    # set when the process's end is known, or a signal ended the wait for it
    _wakeup: threading.Event = field(default_factory=threading.Event)

    def _wait(self) -> None:
        try:
            self._result = self.client.wait(self.exec_id)
        except BaseException as e:
            self._wait_error = e
        finally:
            self._wakeup.set()

    def _pump_stdin(self, pump: InputPump) -> None:
        scanner = DetachScanner(self.detach_keys) if self.detach_keys and self.tty else None
        while True:
            try:
                data = read_some(self.stdin_fd, 65536)
            except OSError as e:
                if self.tty and e.errno in HANGUP_ERRNOS:
                    # Our terminal hung up (a closed window, a dropped ssh): the process
                    # hears SIGHUP, as on a terminal of its own, not a ^D that a shell
                    # would take for a clean exit.
                    self._control.put(("signal", signal.SIGHUP))
                    return
                data = b""
            if not data:
                pump.queue.put(None)  # (the end of our input: the box's stdin's, ^D on a tty)
                return
            detach = False
            if scanner is not None:
                data, detach = scanner.feed(data)
            if data:
                pump.queue.put(data)
            if detach:
                # The input stream is left open, then cut with the connection: a tty
                # takes only an explicit close as ^D, so the box's shell goes on.
                self._detached.set()
                if self._output_call is not None:
                    self._output_call.cancel()
                return

    def _control_loop(self) -> None:
        """Performs resizes and signal forwards off the signal handler."""
        while True:
            kind, value = self._control.get()
            if kind == "stop":
                return
            with contextlib.suppress(BoxliteError):
                if kind == "signal":
                    self._signal(value)
                    # (a tty's process, or an exec's: docker's CLI would have ended
                    # at once; a box's main process without a tty is waited for, as
                    # docker run waits)
                    if (self.tty or self.group_signals) and value in ENDING_SIGNALS:
                        self._end_unless_taken(value)
                else:
                    rows, cols = terminal_size(self.stdout_fd if os.isatty(self.stdout_fd)
                                               else self.stdin_fd)
                    if rows and cols:
                        self.client.resize(self.exec_id, rows, cols)

    def _signal(self, signum: int) -> None:
        """Forward `signum`. One the guest cannot take now (its box paused: the shim
        delivers it at the unpause; its agent starved) ends the session's wait: as if
        the process had ended by it, with why, as the exec's direct path does."""
        try:
            self.client.signal(self.exec_id, signum, group=self.group_signals)
        except (SignalHeld, AgentTimeout) as e:
            reason = e.message if isinstance(e, SignalHeld) else \
                f"{e.message}; the process may still run"
            self._undelivered = SignalEndedWait(reason, signum)
            self._detached.set()
            if self._output_call is not None:
                self._output_call.cancel()
            self._wakeup.set()

    def _end_unless_taken(self, signum: int) -> None:
        """A SIGTERM or a hang-up that the process ignores (an interactive shell does)
        ends this command after a grace all the same (docker's ends at once): a
        `timeout` or a closed terminal must not leave it waiting on a process that runs
        on. Said in one line, exit 128 + N; the process keeps its box."""
        def end() -> None:
            if self._result is not None or self._wait_error is not None:
                return
            name = signal.Signals(signum).name
            self._undelivered = SignalEndedWait(
                f"the process did not end on {name} within {self.ending_grace_s:g} s: it "
                "runs on in the box", signum)
            self._detached.set()
            if self._output_call is not None:
                self._output_call.cancel()
            self._wakeup.set()  # (its output may be over already: a terminal gone)

        timer = threading.Timer(self.ending_grace_s, end)
        timer.daemon = True
        timer.start()

    def _took_call(self, call: Any) -> None:
        self._output_call = call
        if self._detached.is_set():  # (typed before the output began)
            call.cancel()

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGWINCH:
            self._control.put(("resize", signum))
            return
        if not self.sig_proxy or (self.tty and signum not in ENDING_SIGNALS):
            interrupt(signum)  # (this command ends; the process runs on, as docker's)
        self._control.put(("signal", signum))

    def _forwarded(self) -> tuple[signal.Signals, ...]:
        """A tty session's Ctrl-C and the like come through the terminal (raw, with
        -i); a closed terminal (SIGHUP) or a SIGTERM still reach the process (it would
        go on alone on a pty nobody reads); the others end this command (`exec -t`
        without -i: Ctrl-C leaves, as docker's), the process running on. With no tty,
        all go to the process (not sig_proxy: all end this command, Ctrl-Z aside)."""
        if self.tty:
            return (signal.SIGWINCH, *FORWARDED_SIGNALS)
        return PROXIED_SIGNALS if self.sig_proxy else FORWARDED_SIGNALS

    def run(self) -> ExecResult:
        waiter = threading.Thread(target=self._wait, daemon=True)
        waiter.start()
        controller = threading.Thread(target=self._control_loop, daemon=True)
        controller.start()
        if self.stdin:
            pump = InputPump(self.client, self.exec_id)
            threading.Thread(target=self._pump_stdin, args=(pump,), daemon=True).start()
        sink = OutputSink(self.client, self.exec_id, self.stdout_fd, self.stderr_fd)
        try:
            with raw_terminal(self.stdin_fd, self.tty and self.stdin), \
                    forwarding_signals(self._on_signal, self._forwarded()), sink.watching():
                if self.tty:  # (a resize while the process started is taken now)
                    self._control.put(("resize", signal.SIGWINCH))
                for signum in self.held_signals:
                    self._on_signal(signum)
                try:
                    for stream, data in self.client.attach(self.exec_id, self._took_call):
                        sink.write(stream, data)
                except BoxliteError:
                    if not self._detached.is_set():
                        raise
                if self._undelivered is not None:
                    raise self._undelivered
                if self._detached.is_set():
                    raise Detached()
                self._wakeup.wait()
                if self._result is None and self._wait_error is None:
                    assert self._undelivered is not None
                    raise self._undelivered
                waiter.join()
        finally:
            self._control.put(("stop", 0))
        if self._wait_error is not None:
            raise self._wait_error
        assert self._result is not None
        if sink.error is not None and not (self.tty and sink.error.errno in HANGUP_ERRNOS):
            raise OutputLost(sink.error.strerror or str(sink.error), self._result.exit_code)
        return self._result  # (on a terminal that hung up: the process's own end, SIGHUP's)
