"""The bridges: splice() over socketpairs, PortBridge over a pty that behaves like the
virtio port (POLLHUP while no peer has the other end open, readable again on reopen)."""

from __future__ import annotations

import hashlib
import os
import select
import socket
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent import bridge as bridge_module
from boxlite_agent import console
from boxlite_agent.bridge import H2_PREFACE, PortBridge, connect_unix, splice
from boxlite_agent.channels import serve_listener

console.use_stderr()
BridgeStarter = Callable[..., PortBridge]

Handler = Callable[[int, socket.socket], None]


def echo_with_index(index: int, conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data if index < 0 else f"{index}:".encode() + data)


class Upstream:
    """A unix socket server standing in for the gRPC server."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen(16)
        self.closed: list[int] = []  # indexes of connections whose peer closed
        self.count = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            index = self.count
            self.count += 1
            threading.Thread(target=self._serve, args=(index, conn), daemon=True).start()

    def _serve(self, index: int, conn: socket.socket) -> None:
        try:
            self.handler(index, conn)
        except OSError:
            pass
        finally:
            self.closed.append(index)
            conn.close()

    def close(self) -> None:
        self.listener.close()


def read_exact(fd: int, n: int, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    out = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out with {out!r}"
        if poller.poll(left * 1000):
            out += os.read(fd, n - len(out))
    return out


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# -- splice ---------------------------------------------------------------------------


def test_splice_copies_both_ways_and_half_closes() -> None:
    a1, a2 = socket.socketpair()
    b1, b2 = socket.socketpair()
    t = threading.Thread(target=splice, args=(a2, b1), daemon=True)
    t.start()
    a1.sendall(b"ping")
    assert b2.recv(10) == b"ping"
    b2.sendall(b"pong")
    assert a1.recv(10) == b"pong"
    a1.shutdown(socket.SHUT_WR)
    assert b2.recv(10) == b""  # EOF passed on
    b2.sendall(b"still open")  # the other direction keeps working
    assert a1.recv(20) == b"still open"
    b2.close()
    assert a1.recv(10) == b""
    t.join(2)
    assert not t.is_alive()


def test_splice_large_transfer_both_ways() -> None:
    a1, a2 = socket.socketpair()
    b1, b2 = socket.socketpair()
    threading.Thread(target=splice, args=(a2, b1), daemon=True).start()
    payload_a = os.urandom(4 << 20)
    payload_b = os.urandom(3 << 20)
    got: dict[str, bytes] = {}

    def send(s: socket.socket, data: bytes) -> None:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)

    def recv(s: socket.socket, key: str) -> None:
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
        got[key] = b"".join(chunks)

    threads = [
        threading.Thread(target=send, args=(a1, payload_a)),
        threading.Thread(target=send, args=(b2, payload_b)),
        threading.Thread(target=recv, args=(b2, "b")),
        threading.Thread(target=recv, args=(a1, "a")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert hashlib.sha256(got["b"]).digest() == hashlib.sha256(payload_a).digest()
    assert hashlib.sha256(got["a"]).digest() == hashlib.sha256(payload_b).digest()


def test_splice_tears_down_on_reset() -> None:
    a1, a2 = socket.socketpair()
    b1, b2 = socket.socketpair()
    t = threading.Thread(target=splice, args=(a2, b1), daemon=True)
    t.start()
    b2.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    b2.close()
    a1.settimeout(2)
    assert a1.recv(10) == b""
    a1.close()
    t.join(2)
    assert not t.is_alive()


# -- PortBridge -----------------------------------------------------------------------


class PtyPort:
    """A pty master as the 'port'; opening/closing the slave is the host (dis)connecting."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.name = os.ttyname(slave)
        self.host: int | None = slave
        tty.setraw(slave)

    def connect(self) -> int:
        assert self.host is None
        self.host = os.open(self.name, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.host)
        return self.host

    def disconnect(self) -> None:
        assert self.host is not None
        os.close(self.host)
        self.host = None


@pytest.fixture
def upstream_path(tmp_path: Path) -> str:
    return str(tmp_path / "up.sock")


@pytest.fixture
def run_bridge() -> Iterator[BridgeStarter]:
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(open_port: Callable[[], int], path: str, **options: float) -> PortBridge:
        bridge = PortBridge(open_port, connect_unix(path), **options)
        stop = threading.Event()
        t = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
        t.start()
        stops.append((stop, t))
        return bridge

    yield start
    for stop, t in stops:
        stop.set()
        t.join(3)
        assert not t.is_alive()


def test_port_bridge_forwards_bytes_exactly(upstream_path: str, run_bridge: BridgeStarter) -> None:
    up = Upstream(upstream_path, lambda i, c: echo_with_index(-1, c))
    port_bridge_side, host = socket.socketpair()
    bridge = run_bridge(port_bridge_side.detach, upstream_path)
    payload = os.urandom(6 << 20)
    received: list[bytes] = []

    def reader() -> None:
        n = 0
        while n < len(payload):
            data = host.recv(65536)
            assert data
            received.append(data)
            n += len(data)

    t = threading.Thread(target=reader)
    t.start()
    host.sendall(payload)
    t.join(20)
    assert b"".join(received) == payload
    assert bridge.upstreams_opened == 1
    up.close()


def test_port_bridge_reconnects_after_hup(upstream_path: str, run_bridge: BridgeStarter) -> None:
    up = Upstream(upstream_path, echo_with_index)
    port = PtyPort()
    bridge = run_bridge(lambda: port.master, upstream_path)
    assert up.count == 0  # nothing is opened before the host sends bytes
    host = port.host
    assert host is not None
    os.write(host, b"hello")
    assert read_exact(host, 7) == b"0:hello"
    os.write(host, b"more")
    assert read_exact(host, 6) == b"0:more"
    port.disconnect()
    wait_for(lambda: 0 in up.closed)  # HUP closes the upstream: the session ends

    # Still disconnected: the bridge waits (sleeps between polls) with one spare
    # upstream open for the next host, and opens nothing else.
    time.sleep(0.3)
    assert up.count == 2 and up.closed == [0]
    host = port.connect()
    os.write(host, b"again")
    assert read_exact(host, 7) == b"1:again"
    assert bridge.upstreams_opened == 2


def greet_then_echo(index: int, conn: socket.socket) -> None:
    conn.sendall(f"hello{index};".encode())  # as a gRPC server sends its SETTINGS at once
    echo_with_index(index, conn)


def disconnected_port() -> PtyPort:
    port = PtyPort()
    port.disconnect()
    return port


def test_the_next_host_finds_a_spare_upstream_and_its_greeting(
        upstream_path: str, run_bridge: BridgeStarter) -> None:
    up = Upstream(upstream_path, greet_then_echo)
    port = disconnected_port()
    bridge = run_bridge(lambda: port.master, upstream_path)
    wait_for(lambda: up.count == 1)  # opened while no host is there
    time.sleep(0.1)  # (the greeting waits in the spare meanwhile)
    host = port.connect()
    os.write(host, b"x")
    assert read_exact(host, len(b"hello0;0:x")) == b"hello0;0:x"
    assert up.count == 1 and bridge.upstreams_opened == 1


def early_bytes_bridge(upstream_path: str, **options: float) -> tuple[PtyPort, PortBridge]:
    """A bridge stepped by the test, with a spare upstream open, that has read a host's
    bytes while the port still polled POLLHUP: as a virtio port's first bytes can come
    ahead of the control message that tells the guest the host connected."""
    port = disconnected_port()
    os.set_blocking(port.master, False)
    bridge = PortBridge(lambda: port.master, connect_unix(upstream_path), hup_sleep=0.01,
                        **options)
    bridge.step(port.master, poll_ms=0)  # no host: opens the spare
    time.sleep(0.1)  # (its greeting arrives)
    host = port.connect()
    os.write(host, b"x")
    port.disconnect()  # the pty polls POLLHUP again, with the bytes still there
    bridge.step(port.master, poll_ms=0)
    return port, bridge


def step_for(bridge: PortBridge, port: PtyPort, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        bridge.step(port.master, poll_ms=10)


def test_bytes_ahead_of_the_hosts_connection_keep_their_session(upstream_path: str) -> None:
    up = Upstream(upstream_path, greet_then_echo)
    port, bridge = early_bytes_bridge(upstream_path)
    step_for(bridge, port, 0.3)  # POLLHUP all along: the session waits, writes nothing
    assert up.closed == [] and up.count == 1
    host = port.connect()  # the news that the host is there
    step_for(bridge, port, 0.1)
    assert read_exact(host, len(b"hello0;0:x")) == b"hello0;0:x"
    assert up.count == 1 and bridge.upstreams_opened == 1


def test_bytes_ahead_of_a_connection_that_never_shows_are_dropped_in_time(
        upstream_path: str) -> None:
    up = Upstream(upstream_path, greet_then_echo)
    port, bridge = early_bytes_bridge(upstream_path, host_open_grace=0.2)
    step_for(bridge, port, 0.4)
    wait_for(lambda: 0 in up.closed)  # the session ended: its host never came
    host = port.connect()
    step_for(bridge, port, 0.1)
    os.write(host, b"y")
    step_for(bridge, port, 0.1)
    assert read_exact(host, len(b"hello1;1:y")) == b"hello1;1:y"  # nothing of the old one


def test_a_spare_the_server_closed_is_not_used(upstream_path: str,
                                               run_bridge: BridgeStarter) -> None:
    def close_the_first(index: int, conn: socket.socket) -> None:
        if index == 0:
            conn.sendall(b"goaway;")  # e.g. the server's handshake timeout
            return
        echo_with_index(index, conn)

    up = Upstream(upstream_path, close_the_first)
    port = disconnected_port()
    bridge = run_bridge(lambda: port.master, upstream_path)
    wait_for(lambda: 0 in up.closed)
    host = port.connect()
    os.write(host, b"x")
    assert read_exact(host, 3) == b"1:x", "nothing of the closed spare reaches the host"
    assert bridge.upstreams_opened == 1


def test_an_old_spare_is_renewed(upstream_path: str, run_bridge: BridgeStarter) -> None:
    up = Upstream(upstream_path, greet_then_echo)
    port = disconnected_port()
    run_bridge(lambda: port.master, upstream_path, spare_max_age=0.1)
    # renewed, and one spare at a time: every older one closed
    wait_for(lambda: up.count >= 3 and len(up.closed) == up.count - 1)
    host = port.connect()
    time.sleep(0.05)
    newest = up.count - 1
    os.write(host, b"x")
    greeting = f"hello{newest};{newest}:x".encode()
    assert read_exact(host, len(greeting)) == greeting


class SleepCounter:
    """The bridge module's `time` in a test: counts its sleeps (which pass at once) and
    sets `stop` at the `until`th."""

    def __init__(self, stop: threading.Event, until: int) -> None:
        self.stop = stop
        self.until = until
        self.sleeps: list[float] = []
        self.monotonic = time.monotonic

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) >= self.until:
            self.stop.set()


def test_port_bridge_idles_while_disconnected(upstream_path: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """While the port reports POLLHUP (poll() returns at once), every poll is followed by
    a sleep: the bridge goes on polling, and does not spin."""
    Upstream(upstream_path, echo_with_index)
    port = PtyPort()
    port.disconnect()
    steps = [0]

    class Counting(PortBridge):
        def step(self, port_fd: int, poll_ms: int = 500) -> None:
            steps[0] += 1
            super().step(port_fd, poll_ms)

    bridge = Counting(lambda: port.master, connect_unix(upstream_path))
    stop = threading.Event()
    clock = SleepCounter(stop, until=20)
    monkeypatch.setattr(bridge_module, "time", clock)
    t = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    t.start()
    try:
        assert stop.wait(30), f"{steps[0]} polls, {len(clock.sleeps)} sleeps: it spins"
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    assert steps[0] == 20  # one poll per sleep, each sleep the bridge's
    assert clock.sleeps == [bridge_module.HUP_SLEEP_S] * 20 and bridge_module.HUP_SLEEP_S > 0


def test_upstream_close_forwards_then_reopens(upstream_path: str, run_bridge: BridgeStarter) -> None:
    def say_bye(index: int, conn: socket.socket) -> None:
        data = conn.recv(100)
        conn.sendall(f"bye{index}:".encode() + data)  # then close

    up = Upstream(upstream_path, say_bye)
    port_bridge_side, host = socket.socketpair()
    bridge = run_bridge(port_bridge_side.detach, upstream_path)
    host.sendall(b"one")
    assert read_exact(host.fileno(), 8) == b"bye0:one"
    wait_for(lambda: 0 in up.closed)
    time.sleep(0.05)
    host.sendall(b"two")
    assert read_exact(host.fileno(), 8) == b"bye1:two"
    assert bridge.upstreams_opened == 2


def test_new_http2_preface_starts_a_new_upstream(upstream_path: str, run_bridge: BridgeStarter) -> None:
    received: dict[int, bytes] = {}

    def record(index: int, conn: socket.socket) -> None:
        while data := conn.recv(65536):
            received[index] = received.get(index, b"") + data
            conn.sendall(b"k")

    up = Upstream(upstream_path, record)
    port_bridge_side, host = socket.socketpair()
    bridge = run_bridge(port_bridge_side.detach, upstream_path)
    host.sendall(H2_PREFACE + b"first")
    assert read_exact(host.fileno(), 1) == b"k"
    # A host that reconnected without the bridge seeing a HUP (e.g. after a restore)
    host.sendall(H2_PREFACE + b"second")
    assert read_exact(host.fileno(), 1) == b"k"
    wait_for(lambda: 0 in up.closed)
    assert received == {0: H2_PREFACE + b"first", 1: H2_PREFACE + b"second"}
    assert bridge.upstreams_opened == 2


def test_port_bridge_survives_an_absent_server(tmp_path: Path, run_bridge: BridgeStarter) -> None:
    path = str(tmp_path / "late.sock")
    port_bridge_side, host = socket.socketpair()
    bridge = PortBridge(port_bridge_side.detach, connect_unix(path, attempts=2, delay=0.01))
    stop = threading.Event()
    t = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    t.start()
    host.sendall(b"lost")  # nobody to deliver to: dropped, the bridge keeps running
    time.sleep(0.2)
    Upstream(path, echo_with_index)
    host.sendall(b"x")
    assert read_exact(host.fileno(), 3) == b"0:x"
    stop.set()
    t.join(3)


# -- the vsock path: a listener whose connections are spliced to fresh upstreams -------


def test_listener_splices_each_connection_to_its_own_upstream(upstream_path: str, tmp_path: Path) -> None:
    up = Upstream(upstream_path, echo_with_index)
    listener = socket.socket(socket.AF_UNIX)  # stands in for AF_VSOCK, port 2695
    listener.bind(str(tmp_path / "vsock.sock"))
    listener.listen(8)
    t = threading.Thread(target=serve_listener, args=(listener, connect_unix(upstream_path)), daemon=True)
    t.start()
    clients = [socket.socket(socket.AF_UNIX) for _ in range(3)]
    replies = set()
    for c in clients:
        c.connect(str(tmp_path / "vsock.sock"))
        c.sendall(b"hi")
        replies.add(read_exact(c.fileno(), 4))
    assert replies == {b"0:hi", b"1:hi", b"2:hi"}
    clients[1].close()
    wait_for(lambda: len(up.closed) == 1)  # that client's upstream is closed with it
    clients[0].sendall(b"x")
    assert read_exact(clients[0].fileno(), 3)[1:] == b":x"
    listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
    listener.close()
    t.join(2)
    assert not t.is_alive()
