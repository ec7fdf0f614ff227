"""A Docker token server (the `auth: token:` protocol of distribution) for tests.

`GET realm?service=S&scope=repository:NAME:pull,push` (optionally with HTTP basic credentials)
answers `{"token", "access_token", "expires_in", "issued_at"}`; `POST realm` with an OAuth2
password grant (form fields) answers the same. The JWT is RS256-signed by a key whose
self-signed certificate is the registry's `rootcertbundle` and travels in the `x5c` header.

Policy: right credentials get the actions they asked for; no credentials get `pull` on the
repositories listed as public and nothing else (a token with an empty grant, as Docker Hub
does, so the registry answers 401 insufficient_scope); wrong credentials get 401 here.
Every request is recorded in `requests`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

SERVICE = "boxlite-test-registry"
ISSUER = "boxlite-test-token-issuer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    """An RSA key and its self-signed certificate (the registry's root cert bundle)."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def generate(cls, common_name: str = "boxlite test token signer") -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def sign_jwt(self, claims: Mapping[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)


def decode_jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (for test assertions)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@dataclass(frozen=True)
class TokenRequest:
    method: str
    service: str | None
    scopes: tuple[str, ...]
    username: str | None
    status: int
    granted: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (repository, actions)


@dataclass
class TokenPolicy:
    users: dict[str, str] = field(default_factory=dict)
    public_repos: set[str] = field(default_factory=set)
    expires_in: int = 300


class TokenServer:
    """Serves tokens on http://127.0.0.1:PORT/token from a thread; a context manager."""

    def __init__(self, users: Mapping[str, str] | None = None, public_repos: Iterable[str] = (),
                 expires_in: int = 300, service: str = SERVICE, issuer: str = ISSUER,
                 key: SigningKey | None = None) -> None:
        self.policy = TokenPolicy(dict(users or {}), set(public_repos), expires_in)
        self.service, self.issuer = service, issuer
        self.key = key or SigningKey.generate()
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "token server not started"
        return int(self._httpd.server_address[1])

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def write_cert_bundle(self, path: Path) -> Path:
        path.write_bytes(self.key.cert_pem())
        return path

    def start(self) -> TokenServer:
        handler = type("Handler", (_Handler,), {"server_ref": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="token-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def fetched(self, repository: str | None = None) -> list[TokenRequest]:
        """Requests that got a token (for `repository`, when given)."""
        with self._lock:
            reqs = list(self.requests)
        return [r for r in reqs if r.status == 200
                and (repository is None or any(s.split(":")[1:2] == [repository] for s in r.scopes))]

    # --- the protocol -----------------------------------------------------------------------------

    def grant(self, scopes: Iterable[str], username: str | None) -> list[dict[str, Any]]:
        access: list[dict[str, Any]] = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name, wanted = ":".join(parts[1:-1]), [a for a in parts[-1].split(",") if a]
            if username is not None:
                actions = [a for a in wanted if a in ("pull", "push", "delete", "*")]
            else:
                actions = ["pull"] if "pull" in wanted and name in self.policy.public_repos else []
            access.append({"type": "repository", "name": name, "actions": actions})
        return access

    def issue(self, username: str | None, access: list[dict[str, Any]]) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": username or "", "aud": self.service,
                  "exp": now + self.policy.expires_in, "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(16), "access": access}
        token = self.key.sign_jwt(claims)
        issued = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"token": token, "access_token": token, "expires_in": self.policy.expires_in,
                "issued_at": issued}

    def record(self, req: TokenRequest) -> None:
        with self._lock:
            self.requests.append(req)


class _Handler(BaseHTTPRequestHandler):
    server_ref: TokenServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            return self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
        query = urllib.parse.parse_qs(url.query)
        self._serve("GET", query.get("service", [None])[0], query.get("scope", []), self._basic_auth())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        if urllib.parse.urlsplit(self.path).path != "/token":
            return self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
        if form.get("grant_type", [""])[0] != "password":
            return self._reply(400, {"error": "unsupported_grant_type"})
        creds = (form.get("username", [""])[0], form.get("password", [""])[0])
        scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
        self._serve("POST", form.get("service", [None])[0], scopes, creds)

    def _serve(self, method: str, service: str | None, scopes: list[str],
               creds: tuple[str, str] | None) -> None:
        srv = self.server_ref
        username = creds[0] if creds else None
        if creds is not None and srv.policy.users.get(creds[0]) != creds[1]:
            srv.record(TokenRequest(method, service, tuple(scopes), username, 401))
            return self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                               {"WWW-Authenticate": 'Basic realm="boxlite-test-token"'})
        if service != srv.service:
            srv.record(TokenRequest(method, service, tuple(scopes), username, 400))
            return self._reply(400, {"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]})
        access = srv.grant(scopes, username)
        granted = tuple((a["name"], tuple(a["actions"])) for a in access)
        srv.record(TokenRequest(method, service, tuple(scopes), username, 200, granted))
        self._reply(200, srv.issue(username, access))

    def _basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("Authorization", "")
        if not value.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(value[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ("", "")
        return user, password

    def _reply(self, status: int, doc: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
