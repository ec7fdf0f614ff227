"""The hybrid-vsock client and the shim's relay, against unix socket servers of the test
that speak (or break) cloud-hypervisor's `CONNECT <port>\\n` / `OK <n>\\n` handshake."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from boxlite_cli.errors import VmError
from boxlite_cli.shim.relay import StreamRelay
from boxlite_cli.vmm import hybrid_vsock as hv

Behaviour = Callable[[socket.socket, bytes], None]


class FakeVmm:
    """A unix socket server: reads the CONNECT line, then runs `behaviour(conn, line)`."""

    def __init__(self, path: Path, behaviour: Behaviour) -> None:
        self.path = path
        self.behaviour = behaviour
        self.lines: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            line = b""
            while not line.endswith(b"\n"):
                b = conn.recv(1)
                if not b:
                    return
                line += b
            self.lines.append(line)
            self.behaviour(conn, line)

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def echo_on(port: int) -> Behaviour:
    """Accept `port` (OK 1073741824, then a greeting in the same packet), echo the rest."""
    def behave(conn: socket.socket, line: bytes) -> None:
        if line != f"CONNECT {port}\n".encode():
            return  # refused: close
        conn.sendall(b"OK 1073741824\nhello")
        while data := conn.recv(4096):
            conn.sendall(data)
    return behave


@pytest.fixture
def vmm_factory(tmp_path: Path) -> Iterator[Callable[[Behaviour], FakeVmm]]:
    made: list[FakeVmm] = []

    def make(behaviour: Behaviour, name: str = "vsock.sock") -> FakeVmm:
        vmm = FakeVmm(tmp_path / name, behaviour)
        made.append(vmm)
        return vmm

    yield make
    for vmm in made:
        vmm.close()


def test_handshake_then_stream(vmm_factory: Callable[[Behaviour], FakeVmm]) -> None:
    vmm = vmm_factory(echo_on(2695))
    sock, host_port = hv.connect(vmm.path, 2695)
    with sock:
        assert host_port == 1073741824
        assert sock.gettimeout() is None
        # Bytes after the OK line are stream data, not swallowed by the handshake.
        assert hv.recv_exact(sock, 5) == b"hello"
        sock.sendall(b"ping")
        assert hv.recv_exact(sock, 4) == b"ping"
    assert vmm.lines == [b"CONNECT 2695\n"]


def test_refused_port_is_vsock_refused(vmm_factory: Callable[[Behaviour], FakeVmm]) -> None:
    vmm = vmm_factory(echo_on(2695))
    with pytest.raises(hv.VsockRefused, match="vsock port 9999 refused") as e:
        hv.connect(vmm.path, 9999)
    assert isinstance(e.value, VmError)


@pytest.mark.parametrize("reply", [b"NOPE\n", b"OK\n", b"OK abc\n", b"ok 5\n", b"OK 5 6\n",
                                   b"x" * 100, b"\xff\xfe\n"])
def test_garbage_replies_are_protocol_errors(vmm_factory: Callable[[Behaviour], FakeVmm],
                                             reply: bytes) -> None:
    def behave(conn: socket.socket, _: bytes) -> None:
        conn.sendall(reply)
        time.sleep(0.2)

    vmm = vmm_factory(behave)
    with pytest.raises(hv.VsockProtocolError):
        hv.connect(vmm.path, 2695)


def test_reply_cut_short_is_a_protocol_error(vmm_factory: Callable[[Behaviour], FakeVmm]) -> None:
    vmm = vmm_factory(lambda conn, _: conn.sendall(b"OK 12"))
    with pytest.raises(hv.VsockProtocolError, match="cut short"):
        hv.connect(vmm.path, 2695)


def test_no_reply_times_out(vmm_factory: Callable[[Behaviour], FakeVmm]) -> None:
    done = threading.Event()

    def silent(conn: socket.socket, line: bytes) -> None:
        done.wait(30)  # then it closes the connection: no timeout, no VsockTimeout

    vmm = vmm_factory(silent)
    try:
        with pytest.raises(hv.VsockTimeout, match="within the handshake timeout"):
            hv.connect(vmm.path, 2695, timeout_s=0.2)
    finally:
        done.set()


def test_missing_socket_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(hv.VsockUnreachable, match=r"nothere\.sock"):
        hv.connect(tmp_path / "nothere.sock", 2695)


def test_peer_closing_mid_stream_is_vsock_closed(vmm_factory: Callable[[Behaviour], FakeVmm]
                                                 ) -> None:
    vmm = vmm_factory(lambda conn, _: conn.sendall(b"OK 7\npart"))
    sock, _ = hv.connect(vmm.path, 2695)
    with sock, pytest.raises(hv.VsockClosed, match="after 4 of 10 bytes"):
        hv.recv_exact(sock, 10)


def test_connector_retries_a_refused_port_until_it_listens(tmp_path: Path) -> None:
    state = {"listening": False}

    def behave(conn: socket.socket, line: bytes) -> None:
        if state["listening"]:
            echo_on(2695)(conn, line)

    vmm = FakeVmm(tmp_path / "v.sock", behave)
    try:
        threading.Timer(0.3, lambda: state.update(listening=True)).start()
        sock = hv.connector(vmm.path, 2695, retry_s=5)()
        with sock:
            assert hv.recv_exact(sock, 5) == b"hello"
        with pytest.raises(hv.VsockRefused):
            state["listening"] = False
            hv.connector(vmm.path, 2695, retry_s=0)()
    finally:
        vmm.close()


# the relay the shim puts in front of it ------------------------------------------------


def relay_roundtrip(relay: StreamRelay, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(str(relay.path))
        greeting = hv.recv_exact(c, 5)
        c.sendall(payload)
        return greeting + hv.recv_exact(c, len(payload))


def test_relay_carries_many_connections_and_reconnects_after_a_restore(tmp_path: Path) -> None:
    path = tmp_path / "vsock.sock"
    vmm = FakeVmm(path, echo_on(2695))
    relay = StreamRelay(tmp_path / "relay.sock", hv.connector(path, 2695)).start()
    try:
        assert (tmp_path / "relay.sock").stat().st_mode & 0o777 == 0o600
        results: list[bytes] = []
        threads = [threading.Thread(target=lambda i=i: results.append(
            relay_roundtrip(relay, f"msg{i}".encode() * 1000))) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == sorted(b"hello" + f"msg{i}".encode() * 1000 for i in range(8))
        assert len(vmm.lines) == 8
        # "Restore": the VMM process is replaced; its socket comes back at the same path.
        vmm.close()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(str(relay.path))
            assert c.recv(10) == b""  # refused upstream: the client's connection is closed
        assert relay.failures == 1
        vmm2 = FakeVmm(path, echo_on(2695))
        try:
            assert relay_roundtrip(relay, b"again") == b"helloagain"
            assert vmm2.lines == [b"CONNECT 2695\n"]
        finally:
            vmm2.close()
    finally:
        relay.close()
        with contextlib.suppress(OSError):
            vmm.close()
    assert not (tmp_path / "relay.sock").exists()


def test_relay_passes_a_peer_close_on(tmp_path: Path) -> None:
    path = tmp_path / "vsock.sock"
    vmm = FakeVmm(path, lambda conn, _: conn.sendall(b"OK 1\nbye"))
    relay = StreamRelay(tmp_path / "relay.sock", hv.connector(path, 2695)).start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(str(relay.path))
            assert hv.recv_exact(c, 3) == b"bye"
            with pytest.raises(hv.VsockClosed):
                hv.recv_exact(c, 1)
    finally:
        relay.close()
        vmm.close()
