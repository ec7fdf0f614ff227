"""The plain exec socket (shim/execwire.py, shim/execserver.py) against a fake agent
client: the request and its fds, output written straight into the CLI's fds, the
replies, signals, a CLI that goes away, and requests that break the protocol."""

from __future__ import annotations

import array
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boxlite_cli.agent.client import STDERR, STDOUT, ExecResult, Started
from boxlite_cli.errors import AgentError
from boxlite_cli.shim.execserver import ExecServer
from boxlite_cli.shim.execwire import (
    MAX_LINE,
    LineReader,
    WireError,
    recv_request,
    send_line,
    send_request,
)


class FakeClient:
    """Plays the agent: `chunks` of output, then an exit; records what it was asked."""

    def __init__(self, chunks: list[tuple[int, bytes]], exit_code: int = 0,
                 start_error: tuple[int, str] | None = None, hold: threading.Event | None = None
                 ) -> None:
        self.chunks, self.exit_code, self.start_error = chunks, exit_code, start_error
        self.hold = hold
        self.requests: list[dict[str, Any]] = []
        self.signals: list[int] = []
        self.groups: list[bool] = []  # (an exec's: to its process group)

    def exec(self, **kw: Any) -> Started:
        self.requests.append(kw)
        if self.start_error:
            return Started("", 0, *self.start_error)
        return Started("e1", 42, 0, "")

    def attach(self, exec_id: str) -> Iterator[tuple[int, bytes]]:
        for i, chunk in enumerate(self.chunks):
            if i == 1 and self.hold is not None:
                self.hold.wait(10)
            yield chunk

    def wait(self, exec_id: str) -> ExecResult:
        return ExecResult(self.exit_code, 0, False)

    def signal(self, exec_id: str, signum: int, group: bool = False) -> None:
        self.signals.append(signum)
        self.groups.append(group)
        if self.hold is not None:
            self.hold.set()


def serve(tmp_path: Path, client: FakeClient) -> ExecServer:
    return ExecServer(tmp_path / "exec.sock", client)  # type: ignore[arg-type]


def connect(server: ExecServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(server.path))
    return sock


def read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return data


def test_output_goes_straight_into_the_fds_and_the_exit_code_comes_last(tmp_path: Path) -> None:
    client = FakeClient([(STDOUT, b"out1\n"), (STDERR, b"err1\n"), (STDOUT, b"out2\n")], 7)
    server = serve(tmp_path, client)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    with connect(server) as sock:
        send_request(sock, {"argv": ["sh", "-c", "x"], "env": ["A=1"], "cwd": "/w",
                            "user": "u", "timeout_s": 3}, (out_w, err_w))
        os.close(out_w)
        os.close(err_w)
        reader = LineReader(sock)
        assert reader.next() == {"exec_id": "e1"}
        assert reader.next() == {"exit_code": 7}
    assert read_all(out_r) == b"out1\nout2\n"  # the shim let go of its copies
    assert read_all(err_r) == b"err1\n"
    assert client.requests == [{"argv": ["sh", "-c", "x"], "env": ["A=1"], "cwd": "/w",
                                "user": "u", "tty": False, "rows": 0, "cols": 0, "stdin": False,
                                "timeout_s": 3.0, "hold_output": True, "merge_stderr": False}]
    assert oct(server.path.stat().st_mode & 0o777) == "0o600"
    server.close()
    assert not server.path.exists()


def test_one_file_for_stdout_and_stderr_asks_for_one_pipe(tmp_path: Path) -> None:
    """A CLI run with `2>&1` hands one file twice: the process gets one pipe for both
    (the agent's merge_stderr), so their order is kept."""
    client = FakeClient([(STDOUT, b"both\n")], 0)
    server = serve(tmp_path, client)
    out_r, out_w = os.pipe()
    with connect(server) as sock:
        send_request(sock, {"argv": ["true"]}, (out_w, out_w))
        os.close(out_w)
        reader = LineReader(sock)
        assert reader.next() == {"exec_id": "e1"}
        assert reader.next() == {"exit_code": 0}
    assert read_all(out_r) == b"both\n"
    assert client.requests[0]["merge_stderr"] is True
    server.close()


def test_a_process_that_cannot_start_is_one_reply(tmp_path: Path) -> None:
    server = serve(tmp_path, FakeClient([], start_error=(127, 'exec: "x": not found')))
    _, w = os.pipe()
    with connect(server) as sock:
        send_request(sock, {"argv": ["x"]}, (w, w))
        assert LineReader(sock).next() == {"exit_code": 127, "error": 'exec: "x": not found'}
    server.close()


class _StarvedClient(FakeClient):
    def exec(self, **kw: Any) -> Started:
        from boxlite_cli.errors import AgentTimeout

        raise AgentTimeout("starting the process: the box's guest agent did not answer")


def test_a_vm_held_by_a_full_host_disk_is_what_an_unanswered_start_says(
        tmp_path: Path) -> None:
    """QEMU stops a VM whose disk write the host's full disk refused: `exec` said the
    guest did not answer (tester AR); it says why now, and the fix."""
    held = "box web's VM is stopped: its disk could not be written (the host's disk is full)"
    for vm_held, said in ((lambda: held, held), (lambda: None, "did not answer")):
        server = ExecServer(tmp_path / "exec.sock", _StarvedClient([]),  # type: ignore[arg-type]
                            vm_held=vm_held)
        _, w = os.pipe()
        with connect(server) as sock:
            send_request(sock, {"argv": ["true"]}, (w, w))
            reply = LineReader(sock).next()
        server.close()
        assert reply is not None and reply["exit_code"] == 125 and said in reply["error"]


def test_signals_reach_the_process(tmp_path: Path) -> None:
    hold = threading.Event()
    client = FakeClient([(STDOUT, b"a"), (STDOUT, b"b")], 143, hold=hold)
    server = serve(tmp_path, client)
    _, w = os.pipe()
    with connect(server) as sock:
        send_request(sock, {"argv": ["sleep"]}, (w, w))
        reader = LineReader(sock)
        assert reader.next() == {"exec_id": "e1"}
        send_line(sock, {"signal": int(signal.SIGTERM)})
        send_line(sock, {"signal": 9999})  # out of range: ignored
        assert reader.next() == {"exit_code": 143}
    assert client.signals == [signal.SIGTERM]
    assert client.groups == [True]  # (the job the exec started gets it too)
    server.close()


def test_a_signal_the_guest_does_not_take_ends_the_wait(tmp_path: Path) -> None:
    """A guest starved by its own box (its agent does not answer the signal in time): the
    CLI's exec ends as the signal would have ended it, saying so, instead of waiting on."""
    from boxlite_cli.errors import AgentTimeout

    hold = threading.Event()
    client = FakeClient([(STDOUT, b"a"), (STDOUT, b"b")], 0, hold=hold)

    def starved(exec_id: str, signum: int, group: bool = False) -> None:
        raise AgentTimeout("signalling the process: the box's guest agent did not answer "
                           "in time")

    client.signal = starved  # type: ignore[method-assign]
    server = serve(tmp_path, client)
    _, w = os.pipe()
    try:
        with connect(server) as sock:
            send_request(sock, {"argv": ["sleep"]}, (w, w))
            reader = LineReader(sock)
            assert reader.next() == {"exec_id": "e1"}
            send_line(sock, {"signal": int(signal.SIGTERM)})
            answer = reader.next()
            assert answer is not None and answer["exit_code"] == 143
            assert "did not answer in time; the process may still run" in answer["error"]
    finally:
        hold.set()
        server.close()


def test_a_cli_that_hangs_up_gets_no_more_output(tmp_path: Path) -> None:
    hold = threading.Event()
    client = FakeClient([(STDOUT, b"first"), (STDOUT, b"second")], 0, hold=hold)
    server = serve(tmp_path, client)
    r, w = os.pipe()
    sock = connect(server)
    send_request(sock, {"argv": ["x"]}, (w, w))
    os.close(w)
    assert LineReader(sock).next() == {"exec_id": "e1"}
    assert os.read(r, 100) == b"first"
    sock.close()  # the CLI is gone
    time.sleep(0.2)
    hold.set()
    assert read_all(r) == b""  # "second" was not written
    server.close()


@pytest.mark.parametrize(("payload", "fds", "error"), [
    (b"not json\n", 2, "not JSON"),
    (b"[1]\n", 2, "not an object"),
    (b'{"argv": "sh"}\n', 2, "argv must be a list of strings"),
    (b'{"argv": ["sh"]}\n', 1, "expected 2 fds"),
])
def test_bad_requests_get_one_line_and_a_closed_connection(
        tmp_path: Path, payload: bytes, fds: int, error: str) -> None:
    server = serve(tmp_path, FakeClient([]))
    _, w = os.pipe()
    with connect(server) as sock:
        sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                  array.array("i", [w] * fds))])
        reply = LineReader(sock).next()
        assert reply is not None and reply["exit_code"] == 125 and error in reply["error"]
        assert LineReader(sock).next() is None
    server.close()


def test_requests_and_lines_are_bounded(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    with a, b, pytest.raises(WireError, match="too large"):
        send_request(a, {"argv": ["x" * MAX_LINE]}, (0, 1))
    a, b = socket.socketpair()
    with a, b:
        def send_too_much() -> None:
            with contextlib.suppress(OSError):
                a.sendall(b"{" * (MAX_LINE + 70000))

        flood = threading.Thread(target=send_too_much, daemon=True)
        flood.start()
        with pytest.raises(WireError, match="too large"):
            recv_request(b)
        b.close()
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b'{"exit_code": 1}\n')
        a.shutdown(socket.SHUT_WR)
        reader = LineReader(b)
        assert reader.next() == {"exit_code": 1}
        assert reader.next() is None


class FakeRuntime:
    """What exec_direct asks of a Runtime: a running box whose exec socket is `socket`."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def running(self, ref: str, doing: str = "") -> Any:
        return type("S", (), {"id": "b", "name": "b"})()

    def exec_spec(self, state: Any, opts: Any) -> Any:
        return type("P", (), {"argv": ["sleep"], "env": [], "cwd": "", "user": "",
                              "timeout_s": 0.0})()

    def files(self, box_id: str) -> Any:
        return type("F", (), {"exec_socket": self.socket_path})()


def test_exec_direct_falls_back_when_the_shim_has_no_exec_socket(tmp_path: Path) -> None:
    # (The CLI side: a shim of an older boxlite has only agent.sock.)
    from boxlite_cli.runtime import execdirect

    rt = FakeRuntime(tmp_path / "none.sock")
    assert execdirect.exec_direct(rt, "b", None, 1, 2) is None  # type: ignore[arg-type]


class BrokenClient(FakeClient):
    """Its process's stream breaks once `broken` is set (the box's VM went away)."""

    def __init__(self, broken: threading.Event) -> None:
        super().__init__([])
        self.broken = broken

    def attach(self, exec_id: str) -> Iterator[tuple[int, bytes]]:
        self.broken.wait(10)
        raise AgentError("the box is not reachable (Socket closed)")
        yield  # (a generator, as the real one)


def test_closing_lets_a_process_whose_box_stopped_say_why(tmp_path: Path) -> None:
    """The shim closes the exec socket as its box goes: a connection whose process's
    stream broke still answers, with why the box stopped (not a CLI left with none)."""
    broken = threading.Event()
    server = ExecServer(tmp_path / "exec.sock", BrokenClient(broken),  # type: ignore[arg-type]
                        why_stopped=lambda: "the VM powered off" if broken.is_set() else None)
    _, w = os.pipe()
    with connect(server) as sock:
        send_request(sock, {"argv": ["sleep"]}, (w, w))
        reader = LineReader(sock)
        assert reader.next() == {"exec_id": "e1"}
        threading.Timer(0.2, broken.set).start()
        server.close()  # (returns once the connection answered)
        assert reader.next() == {"exit_code": 125, "error": "the box stopped before its "
                                                            "command ended: the VM powered off"}
    assert not server.serving


class SlowStart(FakeClient):
    """Its process takes until `go` to start (a busy guest), then runs until signalled;
    `asked` once it is asked."""

    def __init__(self) -> None:
        super().__init__([(STDOUT, b"out"), (STDOUT, b"")], 143, hold=threading.Event())
        self.asked, self.go = threading.Event(), threading.Event()

    def exec(self, **kw: Any) -> Started:
        self.asked.set()
        self.go.wait(10)
        return super().exec(**kw)


def test_a_signal_while_the_process_starts_reaches_it_once_it_runs(tmp_path: Path) -> None:
    """`timeout` firing between the request and the exec id: the process gets the signal
    when it runs (it was left running, unsignalled, when this CLI died of it)."""
    from boxlite_cli.runtime import execdirect

    client = SlowStart()
    server = serve(tmp_path, client)

    def signal_then_start() -> None:
        client.asked.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # (the handler runs in the main thread, in its wait)
        client.go.set()

    lost: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _: lost.append(signum))
    r, w = os.pipe()
    try:
        threading.Thread(target=signal_then_start, daemon=True).start()
        rt: Any = FakeRuntime(server.path)
        result = execdirect.exec_direct(rt, "b", None, w, w)  # type: ignore[arg-type]
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(w)
    assert lost == []  # (this process's own handler: the signal was not the relay's)
    assert client.signals == [signal.SIGTERM]
    assert result == (143, "")
    assert read_all(r) == b"out"
    os.close(r)
    server.close()


def test_a_signal_to_a_paused_box_ends_the_wait_and_reaches_the_process_at_unpause(
        tmp_path: Path) -> None:
    """Its guest answers nothing while paused: the CLI is told so at once (128 + N), and
    the signal is given once the box is unpaused (a timeout still ends the process)."""
    paused = threading.Event()
    paused.set()
    hold = threading.Event()
    client = FakeClient([(STDOUT, b"a"), (STDOUT, b"b")], 0, hold=hold)
    server = ExecServer(tmp_path / "exec.sock", client, paused=paused.is_set)  # type: ignore[arg-type]
    _, w = os.pipe()
    with connect(server) as sock:
        send_request(sock, {"argv": ["sleep"]}, (w, w))
        reader = LineReader(sock)
        assert reader.next() == {"exec_id": "e1"}
        send_line(sock, {"signal": int(signal.SIGTERM)})
        answer = reader.next()
        assert answer is not None and answer["exit_code"] == 128 + signal.SIGTERM
        assert "the box is paused" in answer["error"]
        time.sleep(0.5)
        assert client.signals == []  # (not to a guest that cannot answer)
        paused.clear()  # unpause
        deadline = time.monotonic() + 10
        while not client.signals and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.signals == [signal.SIGTERM]
    server.close()
