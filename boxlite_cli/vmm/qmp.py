"""A small QMP client: QEMU's control channel behind the VmControl interface."""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from boxlite_cli.errors import VmError
from boxlite_cli.vmm.ramimage import DEVICE_STATE_FILE, RAM_IMAGE_FILE, copy_ram, ram_image

MEMORY_FILE = "memory.state"  # one migration stream: the RAM and the devices
IGNORE_SHARED = "x-ignore-shared"  # the capability that leaves shared RAM out of a stream
MIGRATION_TIMEOUT_S = 300.0


class QmpError(VmError):
    """QEMU's QMP refused a command or could not be reached."""


class Qmp:
    """One QEMU's QMP socket; each call opens its own session."""

    def __init__(self, socket_path: Path | str, timeout_s: float = 10.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout_s = timeout_s

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        with self._negotiated(f"on {command}",
                              f"QEMU did not answer {command} within {self.timeout_s:g} s"
                              ) as (sock, reader):
            return self._send(sock, reader, command, arguments)

    @contextlib.contextmanager
    def _negotiated(self, during: str, silence: str) -> Iterator[tuple[socket.socket, Any]]:
        """A session past the greeting and capabilities negotiation; a socket error
        becomes a QmpError naming `during`, a timeout one saying `silence`."""
        sock = self._session()
        try:
            reader = sock.makefile("rb")
            self._reply(reader, greeting=True)
            self._send(sock, reader, "qmp_capabilities")
            yield sock, reader
        except TimeoutError:
            raise QmpError(silence) from None
        except OSError as e:
            raise QmpError(f"QMP at {self.socket_path} failed {during}: {e}") from e
        finally:
            sock.close()

    def _reply(self, reader: Any, greeting: bool = False) -> Any:
        while True:
            line = reader.readline()
            if not line:
                raise QmpError("QEMU closed the QMP connection")
            msg = json.loads(line)
            if greeting and "QMP" in msg:
                return msg
            if "error" in msg:
                err = msg["error"]
                raise QmpError(f"QEMU refused the command: {err.get('desc', err)}")
            if "return" in msg:
                return msg["return"]
            # an asynchronous event: skip it

    def wait_ready(self, timeout_s: float, alive: Callable[[], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.execute("query-status")
                return
            except QmpError:
                if time.monotonic() >= deadline or (alive is not None and not alive()):
                    raise
                time.sleep(0.005)  # (a warm start waits ~50 ms here: every ms counts)

    def info(self) -> dict[str, Any]:
        status = self.execute("query-status")
        return {"state": str(status.get("status", "unknown")), **status}

    def pause(self) -> None:
        self.execute("stop")

    def resume(self) -> None:
        self.execute("cont")

    def shutdown(self) -> None:
        self.execute("quit")

    def snapshot(self, directory: Path, ram_fd: int | None = None) -> None:
        """Save the VM into `directory` (VM paused first; it stays paused): its RAM and
        device state as one stream (MEMORY_FILE), or, with `ram_fd` (the memfd its RAM
        is shared in), the device state alone and a RAM image (see vmm/ramimage.py).
        Streams go over a file descriptor passed on the QMP socket, so QEMU's seccomp
        sandbox (no spawning, no new files) is kept."""
        self.execute("stop")
        if ram_fd is None:
            self._migrate_to(directory / MEMORY_FILE)
            return
        self._ignore_shared(True)
        try:
            self._migrate_to(directory / DEVICE_STATE_FILE)
        finally:
            self._ignore_shared(False)  # later checkpoints of this VM are whole streams
        copy_ram(ram_fd, directory / RAM_IMAGE_FILE)

    def _migrate_to(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            self.migrate("migrate", fd)
        finally:
            os.close(fd)

    def _ignore_shared(self, on: bool) -> None:
        self.execute("migrate-set-capabilities",
                     {"capabilities": [{"capability": IGNORE_SHARED, "state": on}]})

    def restore(self, directory: Path, begun: bool = False) -> None:
        """Load the snapshot in `directory` into a QEMU started with `-incoming defer`,
        or (`begun`) wait for the load QEMU began from its command line (`-incoming
        fd:N`); the VM is paused afterwards. A snapshot with a RAM image (which that
        QEMU maps as its RAM: see QemuDriver.command) loads its device state only."""
        if begun:
            self.wait_restored()
            return
        image = ram_image(directory)
        name = DEVICE_STATE_FILE if image is not None else MEMORY_FILE
        try:
            fd = os.open(directory / name, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise QmpError(f"cannot read the memory snapshot in {directory}: {e.strerror}") from e
        try:
            if image is None:
                self.migrate("migrate-incoming", fd)
                return
            self._ignore_shared(True)
            try:
                self.migrate("migrate-incoming", fd)
            finally:
                self._ignore_shared(False)
        finally:
            os.close(fd)

    def wait_restored(self, timeout_s: float = MIGRATION_TIMEOUT_S) -> None:
        """Wait for the restore QEMU began from its command line (`-incoming fd:N`)
        to end; the VM is paused afterwards."""
        deadline = time.monotonic() + timeout_s
        with self._negotiated("while restoring", "QEMU did not answer while restoring") as (
                sock, reader):
            self._wait_incoming(sock, reader, deadline)

    def _wait_incoming(self, sock: socket.socket, reader: Any, deadline: float) -> None:
        while True:
            status = self._send(sock, reader, "query-status").get("status")
            if status != "inmigrate":
                if status in ("paused", "postmigrate", "running"):
                    return
                raise QmpError(f"restoring the VM failed (QEMU is {status})")
            if time.monotonic() > deadline:
                raise QmpError("the restore did not finish in time")
            time.sleep(0.005)

    def migrate(self, command: str, fd: int) -> None:
        """Run one migration over `fd` and wait for it to end (bounded)."""
        deadline = time.monotonic() + MIGRATION_TIMEOUT_S
        with self._negotiated(f"during {command}", f"QEMU did not answer during {command}") as (
                sock, reader):
            self._send(sock, reader, "getfd", {"fdname": "boxlite-migration"}, fd)
            self._send(sock, reader, command, {"uri": "fd:boxlite-migration"})
            if command != "migrate":
                self._wait_incoming(sock, reader, deadline)
                return
            while True:
                info = self._send(sock, reader, "query-migrate")
                status = info.get("status")
                if status == "completed":
                    return
                if status in ("failed", "cancelled"):
                    raise QmpError(f"saving the VM failed: {info.get('error-desc', status)}")
                if time.monotonic() > deadline:
                    raise QmpError(f"{command} did not finish within {MIGRATION_TIMEOUT_S:g} s")
                time.sleep(0.01)

    def _session(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            raise QmpError(f"cannot reach QMP at {self.socket_path}: {e}") from e
        return sock

    def _send(self, sock: socket.socket, reader: Any, command: str,
              arguments: dict[str, Any] | None = None, fd: int | None = None) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        data = json.dumps(message).encode() + b"\n"
        if fd is None:
            sock.sendall(data)
        else:
            sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        return self._reply(reader)
