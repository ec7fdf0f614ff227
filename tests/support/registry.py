"""A real registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on 127.0.0.1.

Modes: `plain` (anonymous, plain HTTP), `basic` (htpasswd, bcrypt) and `token` (the Docker token
protocol, served by this package's `TokenServer`). Storage is the filesystem driver in the
directory given, with deletes enabled. The process gets SIGTERM when the test process dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Literal

import httpx

from tests.support.faultproxy import FaultProxy
from tests.support.tokenserver import TokenServer

__all__ = ["FaultProxy", "RegistryError", "RegistryServer", "free_port"]

Mode = Literal["plain", "basic", "token"]
REGISTRY_BIN = "docker-registry"
_PR_SET_PDEATHSIG = 1


class RegistryError(RuntimeError):
    pass


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class RegistryServer:
    """`docker-registry serve` on a free port of 127.0.0.1 (or `ip`); a context manager.

    `users` are the accounts of the `basic` and `token` modes; `public_repos` are readable
    anonymously in `token` mode.
    """

    def __init__(self, workdir: Path, mode: Mode = "plain", users: Mapping[str, str] | None = None,
                 public_repos: Iterable[str] = (), token_expires_in: int = 300,
                 start_timeout: float = 20.0, ip: str = "127.0.0.1") -> None:
        if mode != "plain" and not users:
            raise ValueError(f"mode {mode!r} needs users")
        self.workdir = Path(workdir)
        self.mode: Mode = mode
        self.users = dict(users or {})
        self.storage = self.workdir / "storage"
        self.log_path = self.workdir / "registry.log"
        self.config_path = self.workdir / "config.yml"
        self.token_server: TokenServer | None = None
        if mode == "token":
            self.token_server = TokenServer(self.users, public_repos, token_expires_in)
        self._public_repos = tuple(public_repos)
        self._start_timeout = start_timeout
        self.ip = ip  # (an IPv6 one, `::1`, makes the registry `[::1]:PORT`)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port = 0

    # --- addresses ----------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT` (or `[::1]:PORT`), the registry part of an image reference."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The first account (user, password), or None for a plain registry."""
        return next(iter(self.users.items()), None)

    def ref(self, repository: str, tag: str = "latest") -> str:
        return f"{self.host}/{repository}:{tag}"

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (to damage it under the registry)."""
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    # --- life cycle ---------------------------------------------------------------------------------

    def start(self) -> RegistryServer:
        if shutil.which(REGISTRY_BIN) is None:
            raise RegistryError(f"{REGISTRY_BIN} is not installed (Debian package docker-registry)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        if self.token_server is not None:
            self.token_server.start()
        try:
            for attempt in range(3):
                self.port = free_port(self.ip)
                self._write_config()
                if self._launch():
                    return self
                if b"address already in use" not in self.log_path.read_bytes() or attempt == 2:
                    break
            raise RegistryError(f"docker-registry did not start on {self.host}; log: {self.log_path}\n"
                                + self.log_path.read_text(errors="replace")[-2000:])
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.token_server is not None:
            self.token_server.stop()

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- internals ----------------------------------------------------------------------------------

    def _launch(self) -> bool:
        """Start the process and wait for `GET /v2/`; False when it exited early."""
        if self._log is None:
            self._log = self.log_path.open("ab")
        self._log.write(f"--- starting on {self.host}\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.config_path)],
                                      stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                      preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                return False
            with contextlib.suppress(httpx.HTTPError):
                status = httpx.get(f"{self.url}/v2/", timeout=1.0).status_code
                if status in (200, 401):
                    return True
            time.sleep(0.05)
        self.stop()
        raise RegistryError(f"docker-registry on {self.host} did not answer GET /v2/ within "
                            f"{self._start_timeout:.0f}s; log: {self.log_path}")

    def _write_config(self) -> None:
        # JSON is YAML: no YAML library needed.
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16),
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if self.mode == "basic":
            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text("".join(_htpasswd_line(u, p) for u, p in self.users.items()))
            config["auth"] = {"htpasswd": {"realm": "boxlite-test", "path": str(htpasswd)}}
        elif self.mode == "token":
            assert self.token_server is not None
            bundle = self.token_server.write_cert_bundle(self.workdir / "token-root.pem")
            config["auth"] = {"token": {"realm": self.token_server.realm,
                                        "service": self.token_server.service,
                                        "issuer": self.token_server.issuer,
                                        "rootcertbundle": str(bundle)}}
        self.config_path.write_text(json.dumps(config, indent=2))


def _htpasswd_line(user: str, password: str) -> str:
    out = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True)
    return out.stdout.strip() + "\n"
