"""An HTTP proxy in front of a registry that forwards verbatim, with switchable faults.

Point a client at `proxy.host` instead of the registry's: the `Host` header is forwarded as is,
so the registry's `Location` headers lead back through the proxy. Faults (all off by default,
all cleared by `reset()`), applied in this order:

- `hang(path)`                  accept the request and never answer (until reset/stop)
- `fail(status, times, path)`   answer `status` to the first `times` matching requests (all: None)
- `serve(path, body, ...)`      answer with the given body instead of forwarding
- `truncate_blobs(after)`       blob GETs: full Content-Length, `after` bytes, connection closed
- `corrupt_blobs()`             blob GETs: one byte of the body flipped

`path` arguments are regular expressions searched in the request path (query excluded).
Every request is recorded in `requests`; `count(path, method)` counts them.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BLOB_PATH = r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$"
MANIFEST_PATH = r"^/v2/.+/manifests/[^/]+$"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailer", "trailers", "transfer-encoding", "upgrade", "content-length"}


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    path: str  # with the query string
    status: int | None  # None: hung or cut before a status line was sent
    fault: str | None  # which fault acted on it, if any


@dataclass
class _Override:
    path: re.Pattern[str]
    method: str | None
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class _Faults:
    hang: re.Pattern[str] | None = None
    fail_status: int = 500
    fail_path: re.Pattern[str] | None = None
    fail_left: int | None = 0  # 0: off; None: every matching request
    overrides: list[_Override] = field(default_factory=list)
    truncate_after: int | None = None
    truncate_path: re.Pattern[str] = field(default_factory=lambda: re.compile(BLOB_PATH))
    corrupt_path: re.Pattern[str] | None = None
    corrupt_offset: int | None = None


class FaultProxy:
    """The proxy, served from a thread on a free port of 127.0.0.1; a context manager."""

    def __init__(self, upstream_host: str, upstream_port: int, timeout: float = 60.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.timeout = timeout
        self.requests: list[ProxiedRequest] = []
        self._faults = _Faults()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    @classmethod
    def in_front_of(cls, registry: Any) -> FaultProxy:
        """A proxy for a `RegistryServer` (anything with a `port` on 127.0.0.1)."""
        return cls("127.0.0.1", int(registry.port))

    @property
    def port(self) -> int:
        assert self._httpd is not None, "proxy not started"
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repository: str, tag: str = "latest") -> str:
        return f"{self.host}/{repository}:{tag}"

    def start(self) -> FaultProxy:
        handler = type("Handler", (_Handler,), {"proxy": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- switching faults -----------------------------------------------------------------------------

    def reset(self) -> None:
        """All faults off, hung requests released (their connections closed), counts cleared."""
        with self._lock:
            self._faults = _Faults()
            self._release.set()
            self._release = threading.Event()
            self.requests.clear()

    def hang(self, path: str = BLOB_PATH) -> None:
        with self._lock:
            self._faults.hang = re.compile(path)

    def fail(self, status: int = 500, times: int | None = None, path: str = "") -> None:
        """Answer `status` to the first `times` requests whose path matches (every one: None)."""
        with self._lock:
            self._faults.fail_status, self._faults.fail_left = status, times
            self._faults.fail_path = re.compile(path)

    def serve(self, path: str, body: bytes | str, status: int = 200, content_type: str | None = None,
              headers: dict[str, str] | None = None, method: str | None = None) -> None:
        """Answer requests matching `path` (and `method`, when given) with `body`."""
        hdrs = dict(headers or {})
        if content_type:
            hdrs["Content-Type"] = content_type
        raw = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._faults.overrides.append(_Override(re.compile(path), method, status, raw, hdrs))

    def truncate_blobs(self, after: int, path: str = BLOB_PATH) -> None:
        with self._lock:
            self._faults.truncate_after, self._faults.truncate_path = after, re.compile(path)

    def corrupt_blobs(self, path: str = BLOB_PATH, offset: int | None = None) -> None:
        """Flip one byte (at `offset`, default the middle) of matching GET bodies."""
        with self._lock:
            self._faults.corrupt_path, self._faults.corrupt_offset = re.compile(path), offset

    # --- looking at what happened ---------------------------------------------------------------------

    def count(self, path: str = "", method: str | None = None) -> int:
        rx = re.compile(path)
        with self._lock:
            return sum(1 for r in self.requests
                       if rx.search(r.path.split("?", 1)[0]) and (method is None or r.method == method))

    def _record(self, req: ProxiedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _decide(self, method: str, path: str) -> tuple[str | None, Any]:
        """Which fault applies before forwarding: ("hang", event) / ("fail", status) / ("serve", o)."""
        with self._lock:
            f = self._faults
            if f.hang is not None and f.hang.search(path):
                return "hang", self._release
            if f.fail_path is not None and f.fail_left != 0 and f.fail_path.search(path):
                if f.fail_left is not None:
                    f.fail_left -= 1
                return "fail", f.fail_status
            for o in f.overrides:
                if o.path.search(path) and (o.method is None or o.method == method):
                    return "serve", o
            return None, None

    def _body_fault(self, method: str, path: str) -> tuple[str | None, int | None]:
        with self._lock:
            f = self._faults
            if method != "GET":
                return None, None
            if f.truncate_after is not None and f.truncate_path.search(path):
                return "truncate", f.truncate_after
            if f.corrupt_path is not None and f.corrupt_path.search(path):
                return "corrupt", f.corrupt_offset
            return None, None


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        px, method, path = self.proxy, self.command, self.path.split("?", 1)[0]
        body = self._read_body()
        fault, arg = px._decide(method, path)
        if fault == "hang":
            px._record(ProxiedRequest(method, self.path, None, "hang"))
            arg.wait(600)
            self._cut()
            return
        if fault == "fail":
            px._record(ProxiedRequest(method, self.path, arg, "fail"))
            err = b'{"errors":[{"code":"UNKNOWN","message":"injected by FaultProxy"}]}'
            self._send(arg, [("Content-Type", "application/json")], err)
            return
        if fault == "serve":
            px._record(ProxiedRequest(method, self.path, arg.status, "serve"))
            self._send(arg.status, list(arg.headers.items()), arg.body)
            return
        try:
            status, headers, data = self._forward(method, body)
        except OSError:
            px._record(ProxiedRequest(method, self.path, 502, "upstream-error"))
            self._send(502, [("Content-Type", "text/plain")], b"upstream unreachable")
            return
        bfault, barg = px._body_fault(method, path) if status == 200 else (None, None)
        if bfault == "truncate":
            assert barg is not None
            px._record(ProxiedRequest(method, self.path, status, "truncate"))
            self._send(status, headers, data[:barg], content_length=len(data))
            self._cut()
            return
        if bfault == "corrupt" and data:
            i = barg if barg is not None else len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        px._record(ProxiedRequest(method, self.path, status, bfault))
        upstream_len = next((v for k, v in headers if k.lower() == "content-length"), None)
        headers = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
        if method == "HEAD":
            self._send(status, headers, b"", content_length=int(upstream_len or 0))
        else:
            self._send(status, headers, data)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length is not None else None

    def _forward(self, method: str, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.proxy.upstream
        conn = http.client.HTTPConnection(host, port, timeout=self.proxy.timeout)
        try:
            conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in _HOP_BY_HOP:
                    conn.putheader(k, v)
            if body is not None or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body or b"")))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, list(resp.getheaders()), data
        finally:
            conn.close()

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes,
              content_length: int | None = None) -> None:
        self.send_response_only(status)
        for k, v in headers:
            if k.lower() not in _HOP_BY_HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()

    def _cut(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
