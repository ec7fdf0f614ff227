"""A non-interactive `exec` over the box's plain exec socket (shim/execwire.py): the
shim writes the output into our stdout and stderr, so this process needs no gRPC."""

from __future__ import annotations

import contextlib
import socket

from boxlite_cli.errors import AgentError
from boxlite_cli.runtime.runtime import Runtime
from boxlite_cli.runtime.spec import ProcessOptions
from boxlite_cli.runtime.terminal import PROXIED_SIGNALS, SignalRelay, forwarding_signals
from boxlite_cli.shim.execwire import LineReader, WireError, send_line, send_request


def _send_signal(sock: socket.socket, signum: int) -> None:
    with contextlib.suppress(OSError):
        send_line(sock, {"signal": signum})


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
    with sock, forwarding_signals(relay, PROXIED_SIGNALS):
        try:
            send_request(sock, {"argv": spec.argv, "env": spec.env, "cwd": spec.cwd,
                                "user": spec.user, "timeout_s": spec.timeout_s}, (out, err))
            reader = LineReader(sock)
            first = reader.next()
            if first is not None and "exit_code" not in first:
                relay.to(lambda signum: _send_signal(sock, signum))
                first = reader.next()
        except (OSError, WireError) as e:
            raise AgentError(f"running the process: the box's shim failed ({e})") from e
    if first is None:
        raise AgentError(f"box {state.name} went away while the process ran")
    return int(first["exit_code"]), str(first.get("error") or "")
