"""A client of the OCI distribution API (registry HTTP API v2), for pulling and pushing.

Anonymous, Bearer-token and basic auth; plain HTTP only for loopback registries and
those the user marks insecure; bounded retries with backoff on network errors, 429
and 5xx; blobs stream into the store's ingest (verified there) and resume with a
Range request after an interruption.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from boxlite_cli import __version__
from boxlite_cli.errors import AuthError, BoxliteError, ImageError, NotFound, RegistryError
from boxlite_cli.oci.credentials import Credentials
from boxlite_cli.oci.mediatypes import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from boxlite_cli.oci.reference import DEFAULT_REGISTRY
from boxlite_cli.oci.store import BlobIngest
from boxlite_cli.state.settings import RegistrySettings

DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 8.0
CHUNK = 1 << 20
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def registry_host(registry: str) -> str:
    """The host of `host[:port]` or `[v6]:port`, without the port."""
    if registry.startswith("["):
        return registry[1:].split("]", 1)[0]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    host = registry_host(registry)
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_insecure(registry: str, settings: RegistrySettings) -> bool:
    """Loopback registries and those listed in the settings (by name, or an address in
    one of its CIDR ranges, as docker's) may use plain HTTP."""
    if registry in settings.insecure or is_loopback(registry):
        return True
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.insecure if "/" in n]
    return bool(networks) and any(a in n for a in _addresses(registry_host(registry))
                                  for n in networks)


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The host's addresses: itself if it is one, else what it resolves to (none when
    it does not)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    import socket

    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found = []
    for info in infos:
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
    return found


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` → ("bearer", {"realm": ..., "service": ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


MAX_ERROR_BODY = 64 * 1024  # bytes of an error answer read (a registry may send any)


def registry_error_text(resp: httpx.Response) -> str:
    """The first `errors[].code: message` of a registry error body, if it has one. The
    body is read here (its first 64 KiB: a broken or hostile registry may send without
    end, or stall)."""
    body = bytearray()
    try:
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > MAX_ERROR_BODY:
                break
    except (httpx.TransportError, httpx.StreamError, httpx.DecodingError):
        pass
    try:
        errors = json.loads(bytes(body)).get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError, RecursionError):
        return f"HTTP {resp.status_code}"


def basic_auth_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def _cert_files(registry: str, settings: RegistrySettings, suffix: str) -> list[Path]:
    found: list[Path] = []
    if not registry or "/" in registry or registry.startswith("."):
        return found
    for base in settings.cert_dirs:
        with contextlib.suppress(OSError):
            found += sorted(p for p in (base / registry).iterdir()
                            if p.suffix == suffix and p.is_file())
    return found


def registry_cas(registry: str, settings: RegistrySettings) -> list[Path]:
    """The CA certificates given for this registry (settings.cert_dirs: HOST[:PORT]/*.crt)."""
    return _cert_files(registry, settings, ".crt")


def registry_client_certs(registry: str, settings: RegistrySettings) -> list[tuple[Path, Path]]:
    """The client certificates given for this registry, as docker's: each `*.cert` of
    certs.d/HOST[:PORT]/ with the `*.key` of its name beside it."""
    pairs = []
    for cert in _cert_files(registry, settings, ".cert"):
        key = cert.with_suffix(".key")
        if not key.is_file():
            raise RegistryError(f"the client certificate {cert} of {registry} has no key "
                                f"{key.name} beside it",
                                hint="put its key there, or remove it (CA certificates are "
                                     "*.crt files)")
        pairs.append((cert, key))
    return pairs


def _tls_verify(registry: str, settings: RegistrySettings) -> bool | ssl.SSLContext:
    """httpx's `verify`: off for an insecure registry; the usual CAs (certifi's, as
    httpx's own) and the registry's own where it has some; its client certificate
    where it has one."""
    insecure = is_insecure(registry, settings)
    cas = [] if insecure else registry_cas(registry, settings)
    clients = registry_client_certs(registry, settings)
    if not cas and not clients:
        return not insecure
    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    for ca in cas:
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as e:
            raise RegistryError(f"cannot use the CA certificate {ca} of {registry}: {e}",
                                hint="fix or remove the file") from None
    for cert, key in clients:
        def encrypted(key: Path = key) -> str:  # (not OpenSSL's prompt on the terminal)
            raise RegistryError(f"the client key {key} of {registry} is encrypted (it has a "
                                "pass phrase, which boxlite does not ask for)",
                                hint=f"decrypt it: openssl pkey -in {key} -out {key}.plain "
                                     f"&& mv {key}.plain {key}")

        try:
            context.load_cert_chain(str(cert), str(key), password=encrypted)
        except (OSError, ssl.SSLError) as e:
            raise RegistryError(f"cannot use the client certificate {cert} of {registry}: "
                                f"{e}", hint="fix or remove the file") from None
    return context


# TLS errors of a connection cut on the way (a registry restarting, a proxy's reset):
# as any network error, retried
_TLS_CUT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError,
            ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _ssl_error(error: BaseException) -> ssl.SSLError | None:
    """The TLS failure under an httpx error, if it is one that retrying will not mend
    (a certificate, a protocol)."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return None if isinstance(seen, _TLS_CUT) else seen
        seen = seen.__cause__ or seen.__context__
    return None


# what OpenSSL says of a plain-HTTP server's answer to a TLS hello
PLAIN_HTTP_REASONS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"})
# the server's alerts that it wants a client certificate, or refused ours
CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA",
                      "CERTIFICATE_UNKNOWN")


def _tls_failure(what: str, registry: str, settings: RegistrySettings,
                 error: ssl.SSLError) -> RegistryError:
    """One line on a TLS failure, with the way out."""
    allow = (f"if you trust it, allow it: BOXLITE_INSECURE_REGISTRIES={registry} "
             f"(or insecure_registries = [\"{registry}\"] in {settings.config_file})")
    ours = (settings.cert_dirs[0] / registry) if settings.cert_dirs else None
    if isinstance(error, ssl.SSLCertVerificationError):
        trust = f"put its CA certificate in {ours / 'ca.crt'}, or " if ours is not None else ""
        return RegistryError(f"{what} from {registry}: its TLS certificate is not trusted "
                             f"({error.verify_message or error.reason})", hint=trust + allow)
    if error.reason in PLAIN_HTTP_REASONS:
        return RegistryError(f"{what} from {registry}: it does not speak HTTPS (a plain-HTTP "
                             "registry?)", hint=allow)
    reason = str(error.reason or error)
    if any(alert in reason for alert in CLIENT_CERT_ALERTS):
        given = registry_client_certs(registry, settings)
        if given:
            return RegistryError(f"{what} from {registry}: it did not accept the client "
                                 f"certificate {given[0][0]} ({reason})",
                                 hint="check that a CA the registry trusts signed it")
        where = f"{ours}/" if ours is not None else "certs.d/HOST:PORT/"
        return RegistryError(f"{what} from {registry}: it asks for a client certificate "
                             f"({reason})", hint=f"put yours in {where}client.cert and its "
                                                 "key in client.key there (docker's layout)")
    return RegistryError(f"{what} from {registry}: the TLS handshake failed ({reason})",
                         hint=allow)


MAX_RETRY_AFTER_S = 60.0  # a longer wait a registry asks for is not waited: the error says it


def retry_after(value: str | None) -> float:
    """The seconds a Retry-After header asks to wait (a number of them; its HTTP-date
    form, or a wait past MAX_RETRY_AFTER_S, is taken as none)."""
    try:
        seconds = float(value or "")
    except ValueError:
        return 0.0
    return seconds if 0 < seconds <= MAX_RETRY_AFTER_S else 0.0


def _wait_text(header: str) -> str:
    """A Retry-After as said: seconds with their unit, an HTTP date as it is."""
    header = header.strip()[:40]
    return f"{header} s" if header.isdigit() else header


def _describe(error: BaseException | None) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "timed out waiting for the registry"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect ({error})"
    if isinstance(error, httpx.TransportError):
        return f"connection failed ({error or type(error).__name__})"
    return str(error)


class RegistryClient:
    """Talks to one registry for one repository's pulls. Safe to share between threads."""

    def __init__(self, registry: str, settings: RegistrySettings,
                 credentials: Credentials | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 credentials_problem: str | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.credentials = credentials
        # why there are no credentials, where a source of them failed: said when needed
        self.credentials_problem = credentials_problem
        self.host = DOCKER_HUB_ENDPOINT if registry == DEFAULT_REGISTRY else registry
        self.insecure = is_insecure(registry, settings)
        self._sleep = sleep
        self._base: str | None = None
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}
        self._use_basic = False
        timeout = httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 15.0))
        # (as docker's, a loopback registry is never reached through a proxy of the
        # environment: http_proxy set for the company's network would refuse it)
        try:
            self._http = httpx.Client(timeout=timeout, follow_redirects=True,
                                      verify=_tls_verify(registry, settings),
                                      headers={"User-Agent": f"boxlite/{__version__}"},
                                      trust_env=not is_loopback(registry))
        except ImportError:  # (httpx's SOCKS support is not installed)
            raise RegistryError("the proxy the environment names (ALL_PROXY or another "
                                "*_proxy) is a SOCKS proxy, which boxlite cannot use",
                                hint="give an HTTP proxy there (https_proxy=http://HOST:PORT), "
                                     "or unset it for boxlite") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # transport -------------------------------------------------------------------------

    def _with_retries(self, what: str, attempt_once: Callable[[], httpx.Response]) -> httpx.Response:
        """Run one request with bounded retries on network errors, 429 and 5xx."""
        last: BaseException | None = None
        last_status = ""
        asked = 0.0  # the wait a 429's or 503's Retry-After asked for
        limited = False
        wait_header: str | None = None
        for attempt in range(self.settings.retries + 1):
            if attempt:
                delay = min(MAX_BACKOFF_S, 0.5 * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
                self._sleep(max(delay, asked))
            try:
                resp = attempt_once()
            except httpx.TransportError as e:
                tls = _ssl_error(e)
                if tls is not None:  # (a certificate or a protocol: no retry mends it)
                    raise _tls_failure(what, self.registry, self.settings, tls) from None
                last, last_status = e, ""
                continue
            except httpx.TooManyRedirects:
                raise RegistryError(f"{what} from {self.registry}: too many redirects (the "
                                    "registry redirects in a loop)") from None
            except httpx.RequestError as e:  # (a body it cannot decode, and the like)
                raise RegistryError(f"{what} from {self.registry}: {e or type(e).__name__}"
                                    ) from None
            if resp.status_code in RETRY_STATUS:
                text = registry_error_text(resp)
                status = f"HTTP {resp.status_code}"
                last, last_status = None, text if text == status else f"{text} ({status})"
                wait_header = resp.headers.get("retry-after")
                asked = retry_after(wait_header)
                limited = resp.status_code == 429
                resp.close()
                continue
            return resp
        tries = self.settings.retries + 1
        reason = last_status or _describe(last)
        proxy = self._proxy() if isinstance(last, httpx.ConnectError) else None
        if proxy:  # (the proxy's refusal, not the registry's)
            reason = f"cannot connect through the proxy {proxy} ({last})"
        raise RegistryError(f"{what} from {self.registry}: {reason}, "
                            f"gave up after {tries} attempt{'s' if tries > 1 else ''}",
                            hint=(f"the registry limits how often it is asked (a rate limit"
                                  f"{f'; it asks to wait: {_wait_text(wait_header)}' if wait_header else ''})"
                                  ": wait, then retry") if limited else
                            f"check the proxy the environment names, or set no_proxy="
                            f"{registry_host(self.registry)} to reach it directly" if proxy else
                            "check the registry address and your network, then retry")

    def _proxy(self) -> str | None:
        """The proxy of the environment a request to this registry goes through, if any."""
        if is_loopback(self.registry):
            return None
        import urllib.request

        host = registry_host(self.registry)
        if urllib.request.proxy_bypass(host):  # (the environment's no_proxy, on Linux)
            return None
        proxies = urllib.request.getproxies_environment()
        scheme = "http" if (self._base or "").startswith("http://") else "https"
        return proxies.get(scheme) or proxies.get("all")

    def base_url(self) -> str:
        """`https://host` (or `http://host` for an insecure registry that has no TLS)."""
        if self._base is not None:
            return self._base
        with self._lock:
            if self._base is None:
                self._base = self._probe_scheme()
        return self._base

    def _probe_scheme(self) -> str:
        https = f"https://{self.host}"
        if not self.insecure:
            return https
        try:
            self._http.get(f"{https}/v2/", timeout=min(self.settings.timeout_s, 5.0)).close()
            return https
        except httpx.TransportError as e:
            tls = _ssl_error(e)
            if tls is not None and tls.reason not in PLAIN_HTTP_REASONS:
                return https  # (it speaks TLS, and failed: the request says how)
            return f"http://{self.host}"

    def _auth_header(self, scope: str) -> dict[str, str]:
        token = self._tokens.get(scope)
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self._use_basic and self.credentials is not None:
            return {"Authorization": basic_auth_header(self.credentials)}
        return {}

    def _send(self, method: str, path: str, scope: str, what: str,
              headers: dict[str, str] | None = None, stream: bool = False,
              body: Callable[[], Iterator[bytes] | bytes] | None = None,
              read_most: int | None = None) -> httpx.Response:
        """One request with auth (answering a 401 challenge once) and retries; `path`
        may be a whole URL (an upload's Location); `body` makes the content afresh for
        each attempt. With `read_most`, a successful answer's body is read within the
        attempt (a registry that stalls mid-body is retried too), up to that many bytes:
        ImageError past them."""
        url = path if path.startswith(("http://", "https://")) else self.base_url() + path

        def build() -> httpx.Request:
            return self._http.build_request(method, url,
                                            headers={**(headers or {}), **self._auth_header(scope)},
                                            content=body() if body is not None else None)

        def once() -> httpx.Response:
            resp = self._http.send(build(), stream=stream)
            if resp.status_code == 401:
                challenge = resp.headers.get("www-authenticate", "")
                resp.close()
                self._authenticate(challenge, scope)
                resp = self._http.send(build(), stream=stream)
            if read_most is None or resp.status_code != 200:
                return resp
            try:
                content = bytearray()
                for chunk in resp.iter_bytes():
                    content += chunk
                    if len(content) > read_most:
                        raise ImageError(f"malformed {what.removeprefix('fetching the ')}: "
                                         f"larger than {read_most} bytes")
            finally:
                resp.close()
            return httpx.Response(resp.status_code, headers=resp.headers, content=bytes(content),
                                  request=resp.request)

        return self._with_retries(what, once)

    def _authenticate(self, challenge: str, scope: str) -> None:
        if not challenge.strip():  # a 401 that names no way to log in
            raise AuthError(f"{self.registry} answered 401 Unauthorized (without saying how "
                            "to authenticate)", hint=f"if it needs a login: boxlite login "
                                                     f"{self.registry}")
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.credentials is None:
                raise AuthError(f"{self.registry} requires a login", hint=self._login_hint())
            self._use_basic = True
            return
        if scheme != "bearer" or not params.get("realm"):
            raise AuthError(f"{self.registry} asked for unsupported authentication {challenge!r}")
        self._tokens[scope] = self._fetch_token(params, scope)

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        realm = params["realm"]
        if not realm.startswith("https://") and not (self.insecure and realm.startswith("http://")):
            raise AuthError(f"{self.registry}'s token service {realm!r} is not HTTPS")
        query = {"service": params.get("service", "")} if params.get("service") else {}
        if scope:
            query["scope"] = scope
        auth = (httpx.BasicAuth(self.credentials.username, self.credentials.password)
                if self.credentials else None)

        def once() -> httpx.Response:
            return self._http.get(realm, params=query, auth=auth)

        resp = self._with_retries("getting a token", once)
        if resp.status_code in (401, 403):
            raise AuthError(f"{self.registry} refused the credentials: {registry_error_text(resp)}",
                            hint=f"log in again with: boxlite login {self.registry}")
        if resp.status_code != 200:
            raise AuthError(f"{self.registry}'s token service answered HTTP {resp.status_code}")
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError, RecursionError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError(f"{self.registry}'s token service sent no token")
        return token

    def _refused(self, detail: str) -> AuthError:
        """Basic auth's credentials, sent and answered 401: they are wrong (a password
        changed since the login), not missing."""
        user = self.credentials.username if self.credentials is not None else ""
        return AuthError(f"{self.registry} refused the credentials of {user}: {detail}",
                         hint=f"log in again with: boxlite login {self.registry}")

    def _login_hint(self) -> str:
        login = f"boxlite login {self.registry}"
        if self.credentials_problem:
            return f"no credentials: {self.credentials_problem}; fix that, or run: {login}"
        return f"run: {login}"

    # API -------------------------------------------------------------------------------

    def check_login(self) -> None:
        """Verify the credentials (GET /v2/, answering its challenge)."""
        if self.credentials is None:
            raise AuthError("no credentials given")
        resp = self._send("GET", "/v2/", "", "checking the login")
        resp.close()
        if resp.status_code == 401:
            raise AuthError(f"login to {self.registry} failed: unauthorized: incorrect username "
                            "or password")
        if resp.status_code != 200:
            raise RegistryError(f"{self.registry} answered HTTP {resp.status_code} to /v2/; "
                                "is it an OCI registry?")

    def get_manifest(self, repository: str,
                     reference: str) -> tuple[bytes, str | None, str | None]:
        """The raw manifest or index for a tag or digest, its content type, and the
        digest the registry says it has (Docker-Content-Digest; None without one)."""
        scope = f"repository:{repository}:pull"
        resp = self._send("GET", f"/v2/{repository}/manifests/{reference}", scope,
                          "fetching the manifest", headers={"Accept": MANIFEST_ACCEPT}, stream=True,
                          read_most=MAX_MANIFEST_BYTES)
        try:
            self._raise_for(resp, repository, reference)
            return (resp.content, resp.headers.get("content-type"),
                    resp.headers.get("docker-content-digest"))
        finally:
            resp.close()

    def _raise_for(self, resp: httpx.Response, repository: str, reference: str,
                   blob: bool = False) -> None:
        if resp.status_code in (200, 206):
            return
        detail = registry_error_text(resp)
        name = f"{self.registry}/{repository}"
        if resp.status_code == 401 and self._use_basic:
            raise self._refused(detail)
        if resp.status_code in (401, 403):
            raise AuthError(f"pull access denied for {name}: {detail}",
                            hint=self._login_hint() if self.credentials_problem else
                            f"the repository may not exist, or may need: boxlite login "
                            f"{self.registry}")
        if resp.status_code == 404:
            if detail.startswith("NAME_UNKNOWN"):
                raise NotFound(f"repository {name} not found: {detail}")
            if blob:
                raise NotFound(f"blob {reference} of {name} not found in the registry: {detail}")
            sep = "@" if ":" in reference else ":"  # (a digest: algorithm:hex)
            raise NotFound(f"manifest for {name}{sep}{reference} not found: {detail}")
        raise RegistryError(f"{self.registry} answered HTTP {resp.status_code} for {name}: {detail}")

    @contextmanager
    def _blob_response(self, repository: str, digest: str, offset: int) -> Iterator[httpx.Response]:
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        resp = self._send("GET", f"/v2/{repository}/blobs/{digest}", f"repository:{repository}:pull",
                          f"fetching blob {digest[:19]}", headers=headers, stream=True)
        try:
            if not (offset and resp.status_code == 416):  # (the caller starts again)
                self._raise_for(resp, repository, digest, blob=True)
            yield resp
        finally:
            resp.close()

    def fetch_blob(self, repository: str, digest: str, ingest: BlobIngest,
                   progress: Callable[[int], None] = lambda _: None) -> None:
        """Stream a blob into `ingest` (a store BlobIngest), resuming after drops.

        `progress` gets the number of bytes held so far, after every chunk.
        """
        failures = 0
        from_disk = ingest.offset > 0  # resuming a partial an earlier pull left
        if from_disk and ingest.offset == ingest.size:  # all there: nothing to ask for
            with contextlib.suppress(ImageError):  # (a mismatch: fetched again, whole)
                ingest.commit()
                return
            from_disk = False
        while True:
            offset = ingest.offset
            try:
                with self._blob_response(repository, digest, offset) as resp:
                    if offset and resp.status_code == 416:  # no such range: from byte 0
                        ingest.restart()
                        from_disk = False
                        continue
                    if offset and resp.status_code != 206:
                        ingest.restart()
                    progress(ingest.offset)
                    encoded = resp.headers.get("content-encoding", "identity") != "identity"
                    for chunk in resp.iter_bytes(CHUNK) if encoded else resp.iter_raw():
                        ingest.write(chunk)
                        progress(ingest.offset)
                try:
                    ingest.commit()  # (a mismatch discards what was written)
                except ImageError as e:
                    if from_disk:  # that partial may be what was wrong: once more, whole
                        from_disk = False
                        continue
                    raise ImageError(f"blob {digest[:19]} of {self.registry}/{repository}: "
                                     f"{e.message}", hint="pull again; if it fails the same "
                                     "way, the registry serves a broken blob") from e
                return
            except httpx.TransportError as e:
                failures += 1
                if failures > self.settings.retries:
                    ingest.close()
                    raise RegistryError(
                        f"fetching blob {digest[:19]} from {self.registry}: {_describe(e)} after "
                        f"{ingest.offset} bytes, gave up after {failures} attempts",
                        hint="run the same command again to resume") from e
                ingest.close()
                self._sleep(min(MAX_BACKOFF_S, 0.5 * 2 ** (failures - 1)))

    # push ------------------------------------------------------------------------------

    def _push_failure(self, resp: httpx.Response, repository: str, what: str) -> BoxliteError:
        detail = registry_error_text(resp)
        name = f"{self.registry}/{repository}"
        if resp.status_code == 401 and self._use_basic:
            return self._refused(detail)
        if resp.status_code in (401, 403):
            return AuthError(f"push access denied for {name}: {detail}",
                             hint=f"log in with push rights: boxlite login {self.registry}")
        return RegistryError(f"{what} to {name}: the registry answered HTTP "
                             f"{resp.status_code}: {detail}")

    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether the repository has the blob already (then it is not sent)."""
        resp = self._send("HEAD", f"/v2/{repository}/blobs/{digest}", push_scope(repository),
                          f"checking blob {digest[:19]}")
        resp.close()
        if resp.status_code in (200, 404):
            return resp.status_code == 200
        raise self._push_failure(resp, repository, f"checking blob {digest[:19]}")

    def upload_blob(self, repository: str, digest: str, size: int,
                    read: Callable[[], Iterator[bytes]]) -> None:
        """Send one blob, monolithically (POST an upload, PUT its content with the
        digest); `read` gives its content from the start (once per attempt)."""
        scope = push_scope(repository)
        what = f"uploading blob {digest[:19]}"
        start = self._send("POST", f"/v2/{repository}/blobs/uploads/", scope, what)
        start.close()
        location = start.headers.get("location")
        if start.status_code != 202 or not location:
            raise self._push_failure(start, repository, what)
        url = str(httpx.URL(self.base_url() + "/").join(location))
        url += ("&" if "?" in url else "?") + f"digest={digest}"
        put = self._send("PUT", url, scope, what, body=read,
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Length": str(size)})
        put.close()
        if put.status_code not in (201, 204):
            raise self._push_failure(put, repository, what)

    def put_manifest(self, repository: str, tag: str, raw: bytes, media_type: str) -> str:
        """Send a manifest under `tag`; the digest the registry gives it."""
        resp = self._send("PUT", f"/v2/{repository}/manifests/{tag}", push_scope(repository),
                          "sending the manifest", body=lambda: raw,
                          headers={"Content-Type": media_type})
        resp.close()
        if resp.status_code not in (200, 201):
            raise self._push_failure(resp, repository, "sending the manifest")
        return resp.headers.get("docker-content-digest") or ""


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"
