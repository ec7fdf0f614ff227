"""A non-interactive `exec` over the box's plain exec socket (shim/execwire.py): the
shim writes the output into our stdout and stderr, so this process needs no gRPC."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading

from boxlite_cli.errors import AgentError
from boxlite_cli.runtime.runtime import Runtime
from boxlite_cli.runtime.spec import ProcessOptions
from boxlite_cli.runtime.terminal import (
    ENDING_GRACE_S,
    ENDING_SIGNALS,
    PROXIED_SIGNALS,
    SignalRelay,
    forwarding_signals,
)
from boxlite_cli.shim.execwire import LineReader, WireError, send_line, send_request


def _send_signal(sock: socket.socket, signum: int) -> None:
    with contextlib.suppress(OSError):
        send_line(sock, {"signal": signum})


class _GraceCut:
    """Forwards signals to the process; a SIGTERM or SIGHUP it does not end on within
    ENDING_GRACE_S cuts this CLI's connection (the process runs on, its output let go,
    as when docker's exec CLI ends), so that a `timeout` ends the command."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ended_by: int | None = None
        self.timer: threading.Timer | None = None

    def __call__(self, signum: int) -> None:
        _send_signal(self.sock, signum)
        if signum in ENDING_SIGNALS and self.timer is None:
            self.timer = threading.Timer(ENDING_GRACE_S, self._cut, args=(signum,))
            self.timer.daemon = True
            self.timer.start()

    def _cut(self, signum: int) -> None:
        self.ended_by = signum
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


def exec_direct(rt: Runtime, ref: str, opts: ProcessOptions, out: int, err: int
                ) -> tuple[int, str] | None:
    """Run `opts` in the running box `ref`, its output written to `out` and `err`:
    (exit code, error message or ""). None when the box's shim has no exec socket
    (a shim of an older boxlite): then the caller goes over gRPC."""
    state = rt.running(ref, "exec in it")
    spec = rt.exec_spec(state, opts)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(str(rt.files(state.id).exec_socket))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    relay = SignalRelay()  # (a signal while the process starts is for it too)
    grace = _GraceCut(sock)
    with sock, forwarding_signals(relay, PROXIED_SIGNALS):
        try:
            send_request(sock, {"argv": spec.argv, "env": spec.env, "cwd": spec.cwd,
                                "user": spec.user, "timeout_s": spec.timeout_s}, (out, err))
            reader = LineReader(sock)
            first = reader.next()
            if first is not None and "exit_code" not in first:
                relay.to(grace)
                first = reader.next()
        except (OSError, WireError) as e:
            if grace.ended_by is None:
                raise AgentError(f"running the process: the box's shim failed ({e})") from e
            first = None
        finally:
            grace.cancel()
    if first is None and grace.ended_by is not None:
        name = signal.Signals(grace.ended_by).name
        return 128 + grace.ended_by, (f"the process did not end on {name} within "
                                      f"{ENDING_GRACE_S:g} s: it runs on in the box")
    if first is None:
        raise AgentError(f"box {state.name} went away while the process ran")
    return int(first["exit_code"]), str(first.get("error") or "")
