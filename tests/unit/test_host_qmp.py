"""The QMP client against a QMP server of the test's own (no QEMU): commands, fd passing
for memory save/restore, errors and timeouts."""

from __future__ import annotations

import array
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from boxlite_cli.vmm.qmp import MEMORY_FILE, Qmp, QmpError
from boxlite_cli.vmm.ramimage import DEVICE_STATE_FILE, RAM_IMAGE_FILE, ram_image

Handler = Callable[[str, dict[str, Any], int | None], dict[str, Any] | None]


class FakeQmp:
    """Greets, then answers each command with handler(command, arguments, fd)."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.commands: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\n')
            buf = b""
            while True:
                fds = array.array("i")
                data, ancdata, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(4))
                if not data:
                    return
                fd = None
                for level, kind, payload in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(payload[: len(payload) - len(payload) % 4])
                        fd = fds[0]
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line)
                    self.commands.append(msg["execute"])
                    reply = self.handler(msg["execute"], msg.get("arguments", {}), fd)
                    if reply is not None:
                        conn.sendall(json.dumps(reply).encode() + b"\n")

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def qmp_server(tmp_path: Path) -> Iterator[Callable[[Handler], FakeQmp]]:
    servers: list[FakeQmp] = []

    def start(handler: Handler) -> FakeQmp:
        server = FakeQmp(tmp_path / f"qmp{len(servers)}.sock", handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_snapshot_passes_a_file_descriptor_and_waits_for_completion(
        tmp_path: Path, qmp_server: Callable[[Handler], FakeQmp]) -> None:
    polls = []

    def handler(command: str, args: dict[str, Any], fd: int | None) -> dict[str, Any]:
        if command == "getfd":
            assert fd is not None and args == {"fdname": "boxlite-migration"}
            os.write(fd, b"saved RAM")  # QEMU writes the stream into what it was given
            os.close(fd)
        if command == "migrate":
            assert args == {"uri": "fd:boxlite-migration"}
        if command == "query-migrate":
            polls.append(1)
            return {"return": {"status": "active" if len(polls) < 3 else "completed"}}
        return {"return": {}}

    server = qmp_server(handler)
    Qmp(server.path).snapshot(tmp_path)
    assert (tmp_path / MEMORY_FILE).read_bytes() == b"saved RAM"
    assert server.commands[:1] == ["qmp_capabilities"] and "stop" in server.commands
    assert server.commands[-4:] == ["migrate", "query-migrate", "query-migrate", "query-migrate"]


def test_restore_feeds_the_saved_file_and_waits_until_paused(
        tmp_path: Path, qmp_server: Callable[[Handler], FakeQmp]) -> None:
    (tmp_path / MEMORY_FILE).write_bytes(b"RAM")
    state = {"status": "inmigrate"}

    def handler(command: str, args: dict[str, Any], fd: int | None) -> dict[str, Any]:
        if command == "getfd":
            assert fd is not None and os.read(fd, 10) == b"RAM"
            os.close(fd)
        if command == "migrate-incoming":
            state["status"] = "paused"
        if command == "query-status":
            return {"return": state}
        return {"return": {}}

    server = qmp_server(handler)
    Qmp(server.path).restore(tmp_path)
    assert "migrate-incoming" in server.commands


def test_a_failed_migration_and_a_refused_command_are_qmp_errors(
        tmp_path: Path, qmp_server: Callable[[Handler], FakeQmp]) -> None:
    def handler(command: str, args: dict[str, Any], fd: int | None) -> dict[str, Any]:
        if fd is not None:
            os.close(fd)
        if command == "query-migrate":
            return {"return": {"status": "failed", "error-desc": "disk quota exceeded"}}
        if command == "cont":
            return {"error": {"class": "GenericError", "desc": "Failed to get \"write\" lock"}}
        return {"return": {}}

    server = qmp_server(handler)
    with pytest.raises(QmpError, match="disk quota exceeded"):
        Qmp(server.path).snapshot(tmp_path)
    with pytest.raises(QmpError, match="write\" lock"):
        Qmp(server.path).resume()
    with pytest.raises(QmpError, match="cannot read the memory snapshot"):
        Qmp(server.path).restore(tmp_path / "missing")


def test_a_silent_qemu_times_out_and_a_missing_socket_is_an_error(
        tmp_path: Path, qmp_server: Callable[[Handler], FakeQmp]) -> None:
    server = qmp_server(lambda command, args, fd: None if command == "query-status" else {"return": {}})
    with pytest.raises(QmpError, match="did not answer"):
        Qmp(server.path, timeout_s=0.3).info()
    with pytest.raises(QmpError):
        Qmp(tmp_path / "nothing.sock", timeout_s=0.3).pause()


def test_a_restore_begun_on_the_command_line_is_waited_for_not_fed(
        tmp_path: Path, qmp_server: Callable[[Handler], FakeQmp]) -> None:
    polls = {"n": 0}

    def handler(command: str, args: dict[str, Any], fd: int | None) -> dict[str, Any]:
        assert fd is None, "nothing is passed: QEMU already holds the file"
        if command == "query-status":
            polls["n"] += 1
            return {"return": {"status": "inmigrate" if polls["n"] < 3 else "paused"}}
        return {"return": {}}

    server = qmp_server(handler)
    Qmp(server.path).restore(tmp_path / "not-read", begun=True)
    assert "migrate-incoming" not in server.commands and "getfd" not in server.commands
    assert server.commands.count("query-status") == 3


def test_a_restore_that_ends_in_a_strange_state_is_an_error(
        tmp_path: Path, qmp_server: Callable[[Handler], FakeQmp]) -> None:
    server = qmp_server(lambda command, args, fd: {"return": {"status": "internal-error"}}
                        if command == "query-status" else {"return": {}})
    with pytest.raises(QmpError, match="restoring the VM failed \\(QEMU is internal-error\\)"):
        Qmp(server.path).restore(tmp_path, begun=True)


def _capability_log(log: list[tuple[str, Any]]) -> Handler:
    """A QEMU that writes "DEV" into a migration fd and logs each capability change."""
    state = {"status": "inmigrate"}

    def handler(command: str, args: dict[str, Any], fd: int | None) -> dict[str, Any]:
        if command == "getfd":
            assert fd is not None
            log.append(("fd", os.read(fd, 10) if os.fstat(fd).st_size else os.write(fd, b"DEV")))
            os.close(fd)
        if command == "migrate-set-capabilities":
            log.append(("cap", args["capabilities"]))
        if command in ("migrate", "migrate-incoming"):
            log.append((command, None))
            state["status"] = "paused"
        if command == "query-migrate":
            return {"return": {"status": "completed"}}
        if command == "query-status":
            return {"return": state}
        return {"return": {}}

    return handler


def test_a_snapshot_of_shared_ram_is_a_device_state_and_a_sparse_ram_image(
        tmp_path: Path, qmp_server: Callable[[Handler], FakeQmp]) -> None:
    log: list[tuple[str, Any]] = []
    server = qmp_server(_capability_log(log))
    ram = os.memfd_create("test-ram")
    os.ftruncate(ram, 4 << 20)
    os.pwrite(ram, b"kernel", 0)
    os.pwrite(ram, b"heap", 3 << 20)
    snap = tmp_path / "snap"
    snap.mkdir()
    Qmp(server.path).snapshot(snap, ram_fd=ram)
    on = [{"capability": "x-ignore-shared", "state": True}]
    off = [{"capability": "x-ignore-shared", "state": False}]
    assert log == [("cap", on), ("fd", 3), ("migrate", None), ("cap", off)]
    assert (snap / DEVICE_STATE_FILE).read_bytes() == b"DEV"
    assert not (snap / MEMORY_FILE).exists()
    image = snap / RAM_IMAGE_FILE
    data = image.read_bytes()
    assert len(data) == 4 << 20
    assert data[:6] == b"kernel" and data[3 << 20:(3 << 20) + 4] == b"heap"
    assert data.count(0) == len(data) - 10
    assert image.stat().st_blocks * 512 <= 256 * 1024, "the zero blocks are holes"
    assert ram_image(snap) == image


def test_a_ram_image_restore_loads_the_device_state_with_shared_ram_ignored(
        tmp_path: Path, qmp_server: Callable[[Handler], FakeQmp]) -> None:
    (tmp_path / DEVICE_STATE_FILE).write_bytes(b"DEV")
    (tmp_path / RAM_IMAGE_FILE).write_bytes(b"")
    log: list[tuple[str, Any]] = []
    server = qmp_server(_capability_log(log))
    Qmp(server.path).restore(tmp_path)
    on = [{"capability": "x-ignore-shared", "state": True}]
    off = [{"capability": "x-ignore-shared", "state": False}]
    assert log == [("cap", on), ("fd", b"DEV"), ("migrate-incoming", None), ("cap", off)]


def test_waiting_for_qmp_ends_when_the_vmm_is_gone(tmp_path: Path) -> None:
    """A QEMU that exited at once (a checkpoint it cannot load) is not waited for
    until the timeout: its control socket will never answer."""
    from boxlite_cli.vmm.qmp import Qmp, QmpError

    asked: list[bool] = []

    def alive() -> bool:
        asked.append(False)
        return False

    with pytest.raises(QmpError, match="cannot reach QMP"):
        Qmp(tmp_path / "never.sock").wait_ready(600, alive=alive)
    assert asked == [False]
