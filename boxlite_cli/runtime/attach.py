"""`boxlite attach`: a terminal joins a running box's main process, as docker attach.

Its output from now on comes from the box's log (the shim writes every byte of the
main process there, and holds the guest's one Attach of it); what is typed goes to
its stdin (a box made with -i), through the agent's Input. The attach ends when the
box stops (its exit code), or on the detach keys (Ctrl-P Ctrl-Q or --detach-keys, a
tty box: it runs on). Signals: a tty box gets Ctrl-C through its terminal; otherwise SIGINT and SIGTERM
are sent to the main process (docker's sig-proxy), or, without it, end the attach.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from boxlite_cli.agent.client import AgentClient, InputPump
from boxlite_cli.errors import (
    KILLED_WITH_THE_BOX,
    BoxliteError,
    Conflict,
    Detached,
    Interrupted,
    OutputUnwritable,
)
from boxlite_cli.fdio import read_some, write_all
from boxlite_cli.runtime.detachkeys import DETACH_KEYS, DetachScanner
from boxlite_cli.runtime.foreground import STOP_WAIT_S
from boxlite_cli.runtime.runtime import MAIN
from boxlite_cli.runtime.terminal import forwarding_signals, raw_terminal, terminal_size

if TYPE_CHECKING:
    from boxlite_cli.runtime.runtime import Runtime
    from boxlite_cli.state.records import BoxState

STDERR = 1  # (a log record's stream)
PROXIED = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Attachment:
    rt: Runtime
    box_id: str
    client: AgentClient
    stdin: bool
    tty: bool
    sig_proxy: bool = True
    detach_keys: bytes = DETACH_KEYS
    stdin_fd: int = 0
    stdout_fd: int = 1
    stderr_fd: int = 2
    detached: bool = False
    escaped: bool = False  # (detached by the detach keys)
    ended_by: int = 0  # the signal that ended it (--no-sig-proxy's SIGINT, SIGTERM)
    exit_code: int | None = None  # the main process's, once it ended
    error: BaseException | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    _signals: queue.Queue[int] = field(default_factory=queue.Queue)

    def _output(self) -> None:
        stream = 0
        try:
            for record in self.rt.logs(self.box_id, follow=True, tail=0):
                stream = record.stream
                fd = self.stderr_fd if stream == STDERR else self.stdout_fd
                if not write_all(fd, record.data):
                    self.detached = True  # (our reader is gone: the box goes on)
                    break
        except OSError as e:  # (a full disk under where the output was to go: its)
            what = "standard error" if stream == STDERR else "standard output"
            self.error = OutputUnwritable(e, what) if e.filename is None else e
        except BaseException as e:  # (reported by run)
            self.error = e
        finally:
            self._done.set()

    def _wait(self) -> None:
        with contextlib.suppress(BoxliteError):
            self.exit_code = self.client.wait(MAIN).exit_code

    def _input(self, pump: InputPump) -> None:
        scanner = DetachScanner(self.detach_keys) if self.tty else None
        while True:
            try:
                data = read_some(self.stdin_fd, 65536)
            except OSError:
                data = b""
            if not data and scanner is None:
                pump.queue.put(None)  # (the end of piped input closes the box's stdin)
                return
            detach = not data  # (a tty: its end only ends the attach)
            if scanner is not None and data:
                data, detach = scanner.feed(data)
                self.escaped = detach
            if data:
                pump.queue.put(data)
            if detach:  # (the stream is left open, then cut with the connection: a tty
                # takes only an explicit close as ^D, so the box's shell goes on)
                self.detached = True
                self._done.set()
                return

    def _forward_signals(self) -> None:
        while (signum := self._signals.get()) != 0:
            if signum == signal.SIGWINCH:
                rows, cols = terminal_size(self.stdin_fd)
                if rows and cols:
                    with contextlib.suppress(BoxliteError):
                        self.client.resize(MAIN, rows, cols)
            elif self.sig_proxy:
                with contextlib.suppress(BoxliteError):
                    self.client.signal(MAIN, signum)
            else:
                self.ended_by = signum
                self.detached = True
                self._done.set()

    def run(self) -> None:
        """Until the box stops or we detach."""
        waiter = threading.Thread(target=self._wait, name="attach-wait", daemon=True)
        waiter.start()
        threading.Thread(target=self._output, name="attach-output", daemon=True).start()
        threading.Thread(target=self._forward_signals, name="attach-signals",
                         daemon=True).start()
        if self.stdin:
            pump = InputPump(self.client, MAIN)
            threading.Thread(target=self._input, args=(pump,), name="attach-input",
                             daemon=True).start()
        try:
            with raw_terminal(self.stdin_fd, self.tty and self.stdin), \
                    forwarding_signals(self._signals.put, (signal.SIGWINCH,) if self.tty
                                       else PROXIED):
                if self.tty:
                    self._signals.put(signal.SIGWINCH)  # (the box's pty takes our size)
                while not self._done.wait(0.2):
                    pass
        finally:
            self._signals.put(0)
        if self.error is not None:
            raise self.error
        if not self.detached:
            waiter.join(STOP_WAIT_S)  # (the box stopped: its main process ended first)


def attach(rt: Runtime, ref: str, stdin: bool = True, sig_proxy: bool = True,
           detach_keys: bytes = DETACH_KEYS) -> int:
    """Attach to the running box `ref`; its main process's exit code once the box
    stopped, or 0 after a detach."""
    state = rt.running(ref, "attach to it")
    process = state.config.process
    # (this run of the box only: a `restart` meanwhile ends the attach, as docker's)
    client, shim = rt.connect_run(state.id)
    try:
        attachment = Attachment(rt, state.id, client, stdin=stdin and process.stdin,
                                tty=process.tty, sig_proxy=sig_proxy, detach_keys=detach_keys)
        attachment.run()
    finally:
        client.close()
    if attachment.escaped:
        raise Detached()  # (said and 0 in cli/errors.py)
    if attachment.ended_by:  # (128 + N, as the CLI that dies of it: the box runs on)
        raise Interrupted(attachment.ended_by)
    if attachment.detached:
        return 0
    rt.wait_stopped(state.id, STOP_WAIT_S, shim=shim)
    if attachment.exit_code is not None:
        return attachment.exit_code
    now: BoxState | None = None
    with contextlib.suppress(BoxliteError):  # (killed: what the box recorded)
        now = rt.get(state.id)
    if now is not None and now.started_at != state.started_at:
        raise Conflict(f"box {state.name} was restarted: the run this followed ended",
                       hint=f"attach to the new run: boxlite attach {state.name}")
    if now is None or now.exit_code is None:  # (removed under it, rm -f: killed with it)
        return KILLED_WITH_THE_BOX
    return now.exit_code
