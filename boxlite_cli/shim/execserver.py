"""The shim's end of the plain exec socket (see execwire.py): non-interactive execs
for CLIs that need no gRPC, each connection served by a thread of its own."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boxlite_cli.agent.client import SIGNAL_HELD, AgentClient
from boxlite_cli.agent.sink import OutputSink
from boxlite_cli.errors import (
    KILLED_WITH_THE_BOX,
    AgentTimeout,
    BoxliteError,
    BoxStopped,
    OutputLost,
)
from boxlite_cli.fdio import same_file
from boxlite_cli.shim.execwire import FD_COUNT, LineReader, WireError, recv_request, send_line

log = logging.getLogger("boxlite.shim")
MAX_CONNECTIONS = 128
STOPPED_REASON_WAIT_S = 2.0  # for the guest's last words, once a process's stream broke
# At close, for the processes' connections to say how they ended (a box that stopped
# under them: its reason, not a CLI left without an answer).
DRAIN_S = STOPPED_REASON_WAIT_S + 1.0
UNPAUSE_POLL_S = 0.25  # how often a signal held for a paused box looks for its unpause


def _strings(request: dict[str, Any], key: str) -> list[str]:
    value = request.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WireError(f"{key} must be a list of strings")
    return value


class ExecServer:
    """Accepts on `path` until closed; runs each request through `client`."""

    def __init__(self, path: Path, client: AgentClient,
                 why_stopped: Callable[[], str | None] | None = None,
                 stopping: Callable[[], bool] | None = None,
                 paused: Callable[[], bool] | None = None,
                 vm_held: Callable[[], str | None] | None = None) -> None:
        """`why_stopped`: why the box stopped under a process (None when it did not, or
        the reason is not known), asked when a process's stream broke. `stopping`: the
        box is being stopped as it should be (its main process ended, or a stop, kill
        or rm -f came): a process it ends then was killed with it (137, as docker's
        exec), not lost to a failure of boxlite's (125). `paused`: the box is paused
        (a signal then waits for its unpause). `vm_held`: why the VM stands stopped
        though the box is not paused (a full host disk), asked when the guest did not
        answer."""
        self.path = path
        self.client = client
        self.why_stopped = why_stopped
        self.stopping = stopping
        self.paused = paused or (lambda: False)
        self.vm_held = vm_held or (lambda: None)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.serving: set[threading.Thread] = set()
        self.serving_lock = threading.Lock()
        path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)
        try:
            self.listener.bind(str(path))
        finally:
            os.umask(old_umask)
        self.listener.listen(64)
        threading.Thread(target=self._accept, name="exec-server", daemon=True).start()

    def close(self, drain_s: float = DRAIN_S) -> None:
        """No new connections; the open ones get up to `drain_s` to answer."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.path.unlink(missing_ok=True)
        deadline = time.monotonic() + drain_s
        with self.serving_lock:
            serving = list(self.serving)
        for thread in serving:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.slots.acquire()
            thread = threading.Thread(target=self._serve, args=(conn,), name="exec-conn",
                                      daemon=True)
            with self.serving_lock:
                self.serving.add(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            try:
                request, fds = recv_request(conn)
                if len(fds) != FD_COUNT:
                    raise WireError(f"expected {FD_COUNT} fds (stdout, stderr), got {len(fds)}")
                self._run(conn, request, fds[0], fds[1])
            except WireError as e:
                log.info("exec socket: %s", e)
                with contextlib.suppress(OSError):
                    send_line(conn, {"exit_code": 125, "error": f"bad exec request: {e}"})
            except OSError as e:
                log.info("exec socket: the CLI went away: %s", e)
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            conn.close()
            self.slots.release()
            with self.serving_lock:
                self.serving.discard(threading.current_thread())

    def _run(self, conn: socket.socket, request: dict[str, Any], out: int, err: int) -> None:
        timeout_s = request.get("timeout_s", 0.0)
        if not isinstance(timeout_s, int | float):
            raise WireError("timeout_s must be a number")
        try:
            started = self.client.exec(
                argv=_strings(request, "argv"), env=_strings(request, "env"),
                cwd=str(request.get("cwd", "")), user=str(request.get("user", "")),
                tty=False, rows=0, cols=0, stdin=False, timeout_s=float(timeout_s),
                hold_output=True, merge_stderr=same_file(out, err))  # (2>&1: order kept)
        except BoxliteError as e:
            held = self.vm_held() if isinstance(e, AgentTimeout) else None
            send_line(conn, {"exit_code": 125, "error": held or str(e)})
            return
        if started.error_exit_code:
            send_line(conn, {"exit_code": started.error_exit_code, "error": started.error})
            return
        send_line(conn, {"exec_id": started.exec_id})
        cli_gone = threading.Event()
        answer = _Answer(conn)
        sink = OutputSink(self.client, started.exec_id, out, err)
        threading.Thread(target=self._signals,
                         args=(conn, started.exec_id, cli_gone, answer, sink),
                         name="exec-signals", daemon=True).start()
        try:
            with sink.watching():
                for stream, data in self.client.attach(started.exec_id):
                    if not cli_gone.is_set():
                        sink.write(stream, data)
            code = self.client.wait(started.exec_id).exit_code
        except BoxliteError as e:
            if self.stopping is not None and self.stopping():
                answer.send({"exit_code": KILLED_WITH_THE_BOX})
                return
            reason = self._stopped_reason()
            answer.send({"exit_code": 125,
                         "error": BoxStopped(reason, 125).message if reason else str(e)})
            return
        if sink.error is not None:
            lost = OutputLost(sink.error.strerror or str(sink.error), code)
            answer.send({"exit_code": lost.exit_code, "error": str(lost)})
            return
        answer.send({"exit_code": code})

    def _stopped_reason(self, wait_s: float = STOPPED_REASON_WAIT_S) -> str | None:
        """Why the box stopped, waiting a little for it (the guest says why as it goes)."""
        if self.why_stopped is None:
            return None
        deadline = time.monotonic() + wait_s
        while (reason := self.why_stopped()) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return reason

    def _signals(self, conn: socket.socket, exec_id: str, cli_gone: threading.Event,
                 answer: _Answer, sink: OutputSink) -> None:
        """{"signal": N} lines from the CLI, until it hangs up. A signal the guest does
        not take in time (its agent starved by the box) ends the CLI's wait: as if the
        process had ended by it, with why (it may still run). A CLI that hangs up before
        the process ends was killed: the process runs on (as docker's exec), and its
        stdout and stderr are let go, so that their readers see their end."""
        reader = LineReader(conn)
        try:
            while (message := reader.next()) is not None:
                signum = message.get("signal")
                if isinstance(signum, int) and 0 < signum < 65 and self.paused():
                    # (its guest answers nothing: the CLI's wait ends now, with why, and
                    # the process gets the signal once the box is unpaused)
                    threading.Thread(target=self._signal_once_unpaused, args=(exec_id, signum),
                                     name="exec-signal-held", daemon=True).start()
                    answer.send({"exit_code": 128 + signum, "error": SIGNAL_HELD})
                elif isinstance(signum, int) and 0 < signum < 65:
                    try:
                        self.client.signal(exec_id, signum, group=True)
                    except AgentTimeout as e:
                        answer.send({"exit_code": 128 + signum,
                                     "error": f"{e.message}; the process may still run"})
                    except BoxliteError:
                        pass
        except (OSError, WireError):
            pass
        cli_gone.set()
        sink.let_go()


    def _signal_once_unpaused(self, exec_id: str, signum: int) -> None:
        while self.paused():
            time.sleep(UNPAUSE_POLL_S)
        with contextlib.suppress(BoxliteError):  # (it ended meanwhile, or the box did)
            self.client.signal(exec_id, signum, group=True)


class _Answer:
    """The one line that ends an exec on its socket (the process's end, or a signal
    that could not reach it), whichever thread has it first."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.sent = False

    def send(self, message: dict[str, Any]) -> None:
        with self.lock:
            if self.sent:
                return
            self.sent = True
            send_line(self.conn, message)
