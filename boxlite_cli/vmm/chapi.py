"""A client of cloud-hypervisor's REST API, served on its `--api-socket` unix socket.

Endpoints (all under /api/v1): `GET vmm.ping`, `PUT vmm.shutdown`, `GET vm.info`,
`PUT vm.pause`, `PUT vm.resume`, `PUT vm.shutdown`, `PUT vm.power-button`,
`PUT vm.snapshot {"destination_url": "file:///dir"}` and
`PUT vm.restore {"source_url": "file:///dir", "prefault": false}`. Actions answer
204; errors are 4xx/5xx with the VMM's reason in the body. Every request is bounded
by a timeout (the socket's), so a VMM that never answers cannot hang the caller.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boxlite_cli.errors import VmError

API_PREFIX = "/api/v1/"
DEFAULT_TIMEOUT_S = 10.0
# Snapshots write all of the guest's memory: allow them more.
SNAPSHOT_TIMEOUT_S = 120.0
MAX_ERROR_BODY = 500


class VmmApiError(VmError):
    """cloud-hypervisor's API refused a request or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class VmmApiTimeout(VmmApiError):
    """cloud-hypervisor's API did not answer in time."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket (the host name only fills the Host header)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def file_url(directory: Path) -> str:
    return Path(directory).absolute().as_uri()


class ChApi:
    """One cloud-hypervisor's API (a VmControl). Each call opens its own connection."""

    def __init__(self, socket_path: Path | str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.socket_path = str(socket_path)
        self.timeout_s = timeout_s

    def request(self, method: str, endpoint: str, body: dict[str, Any] | None = None,
                timeout_s: float | None = None) -> Any:
        """Send one request; the decoded JSON answer (None for an empty one)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        what = f"{method} {API_PREFIX}{endpoint}"
        conn = _UnixHTTPConnection(self.socket_path, timeout)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, API_PREFIX + endpoint, body=payload, headers=headers)
            response = conn.getresponse()
            status = response.status
            data = response.read()
        except TimeoutError:
            raise VmmApiTimeout(f"cloud-hypervisor did not answer {what} within "
                                f"{timeout:g} s") from None
        except (OSError, http.client.HTTPException) as e:
            raise VmmApiError(f"cloud-hypervisor API at {self.socket_path} failed on "
                              f"{what}: {e}") from e
        finally:
            conn.close()
        text = data.decode(errors="replace").strip()
        if status >= 400:
            detail = text[:MAX_ERROR_BODY] or response.reason
            raise VmmApiError(f"cloud-hypervisor refused {what} (HTTP {status}): {detail}",
                              status=status, body=text)
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise VmmApiError(f"cloud-hypervisor answered {what} with invalid JSON: "
                              f"{text[:MAX_ERROR_BODY]!r}", status=status, body=text) from None

    # the VMM --------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        answer = self.request("GET", "vmm.ping")
        return answer if isinstance(answer, dict) else {}

    def shutdown_vmm(self) -> None:
        """End the cloud-hypervisor process (the VM with it)."""
        self.request("PUT", "vmm.shutdown")

    def wait_ready(self, timeout_s: float, alive: Callable[[], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.ping()
                return
            except VmmApiTimeout:
                raise
            except VmmApiError:
                if time.monotonic() >= deadline or (alive is not None and not alive()):
                    raise
                time.sleep(0.02)

    # the VM ---------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        answer = self.request("GET", "vm.info")
        if not isinstance(answer, dict) or "state" not in answer:
            raise VmmApiError(f"cloud-hypervisor's vm.info has no state: {answer!r}"[:300])
        return answer

    def pause(self) -> None:
        self.request("PUT", "vm.pause")

    def resume(self) -> None:
        self.request("PUT", "vm.resume")

    def shutdown(self) -> None:
        """Stop the VM now, then end the VMM process (which vm.shutdown alone keeps)."""
        self.request("PUT", "vm.shutdown")
        self.shutdown_vmm()

    def power_button(self) -> None:
        """ACPI power button: ask the guest to power off."""
        self.request("PUT", "vm.power-button")

    def snapshot(self, directory: Path, ram_fd: int | None = None) -> None:
        """Save the (paused) VM into `directory` (config.json, state.json, memory);
        (`ram_fd` never holds: cloudhv.py's command takes none)."""
        self.request("PUT", "vm.snapshot", {"destination_url": file_url(directory)},
                     timeout_s=max(self.timeout_s, SNAPSHOT_TIMEOUT_S))

    def restore(self, directory: Path, begun: bool = False, prefault: bool = False) -> None:
        """Restore a snapshot into this (VM-less) VMM; the VM comes back paused.
        (`begun` never holds: this VMM takes no snapshot on its command line.)"""
        self.request("PUT", "vm.restore", {"source_url": file_url(directory),
                                           "prefault": prefault},
                     timeout_s=max(self.timeout_s, SNAPSHOT_TIMEOUT_S))
