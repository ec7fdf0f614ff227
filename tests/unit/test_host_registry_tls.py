"""A registry's TLS: its own CA certificates and client certificates (certs.d, as
docker's and podman's), and a TLS failure said in one line with the way out, never
retried (a real TLS server of the test's own, reached under a name that is not
loopback); the environment's proxy, never for a loopback registry; docker's forms of
insecure registries."""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from boxlite_cli.errors import RegistryError, UsageError
from boxlite_cli.oci.credentials import Credentials
from boxlite_cli.oci.registry import RegistryClient, _ssl_error, is_insecure, registry_cas
from boxlite_cli.state.settings import RegistrySettings, insecure_entry

NAME = "registry.boxlite-test"  # (resolved to 127.0.0.1 by the test only: not loopback to us)


class _V2(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def _cert(tmp_path: Path) -> tuple[Path, Path]:
    key, crt = tmp_path / "key.pem", tmp_path / "ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return crt, key


def _serve(tls: ssl.SSLContext | None) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _V2)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def named(monkeypatch: pytest.MonkeyPatch) -> None:
    """NAME resolves to 127.0.0.1 (a registry that is not loopback by its name)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kw: object) -> object:
        return real("127.0.0.1" if host == NAME else host, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return _cert(tmp_path)


@pytest.fixture
def tls_port(cert: tuple[Path, Path]) -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    yield from _serve(context)


@pytest.fixture
def plain_port() -> Iterator[int]:
    yield from _serve(None)


def _login(registry: str, settings: RegistrySettings, sleeps: list[float]) -> None:
    with RegistryClient(registry, settings, Credentials("u", "p"), sleep=sleeps.append) as client:
        client.check_login()


def test_an_untrusted_certificate_is_one_line_with_the_fix_and_no_retry(
        named: None, tls_port: int, tmp_path: Path) -> None:
    registry = f"{NAME}:{tls_port}"
    settings = RegistrySettings(retries=3, cert_dirs=(tmp_path / "certs.d",),
                                config_file=tmp_path / "config.toml")
    sleeps: list[float] = []
    with pytest.raises(RegistryError) as e:
        _login(registry, settings, sleeps)
    assert e.value.message.startswith(f"checking the login from {registry}: its TLS "
                                      "certificate is not trusted (")
    assert "\n" not in e.value.message and sleeps == []  # (no retry)
    assert e.value.hint == (f"put its CA certificate in {tmp_path}/certs.d/{registry}/ca.crt, "
                            f"or if you trust it, allow it: BOXLITE_INSECURE_REGISTRIES="
                            f"{registry} (or insecure_registries = [\"{registry}\"] in "
                            f"{tmp_path}/config.toml)")


def test_a_registrys_own_ca_in_certs_d_is_trusted(named: None, tls_port: int, tmp_path: Path,
                                                   cert: tuple[Path, Path]) -> None:
    registry = f"{NAME}:{tls_port}"
    docker_dir = tmp_path / "etc-docker-certs.d"
    (docker_dir / registry).mkdir(parents=True)
    (docker_dir / registry / "ca.crt").write_bytes(cert[0].read_bytes())
    (docker_dir / registry / "client.key").write_text("not a CA: not read")
    settings = RegistrySettings(cert_dirs=(tmp_path / "certs.d", docker_dir))
    assert registry_cas(registry, settings) == [docker_dir / registry / "ca.crt"]
    _login(registry, settings, [])  # (no error: the certificate verified)
    assert registry_cas("../x", settings) == [] and registry_cas(".", settings) == []


def test_a_broken_ca_file_is_named(named: None, tmp_path: Path) -> None:
    ours = tmp_path / "certs.d" / f"{NAME}:1"
    ours.mkdir(parents=True)
    (ours / "ca.crt").write_text("garbage")
    with pytest.raises(RegistryError, match=r"cannot use the CA certificate .*ca\.crt of "):
        RegistryClient(f"{NAME}:1", RegistrySettings(cert_dirs=(tmp_path / "certs.d",)))


def test_a_plain_http_registry_is_said_so(named: None, plain_port: int) -> None:
    registry = f"{NAME}:{plain_port}"
    sleeps: list[float] = []
    with pytest.raises(RegistryError) as e:
        _login(registry, RegistrySettings(retries=3), sleeps)
    assert e.value.message == (f"checking the login from {registry}: it does not speak HTTPS "
                               "(a plain-HTTP registry?)")
    assert sleeps == [] and e.value.hint is not None
    assert f"BOXLITE_INSECURE_REGISTRIES={registry}" in e.value.hint
    # ... and allowed, it is reached over plain HTTP
    _login(registry, RegistrySettings(insecure=frozenset({registry})), [])


def test_loopback_by_any_spelling_is_insecure() -> None:
    settings = RegistrySettings()
    for registry in ("localhost:5000", "LOCALHOST:5000", "Localhost", "127.0.0.1:5000",
                     "[::1]:5000"):
        assert is_insecure(registry, settings), registry
    assert not is_insecure("localhost.example:5000", settings)


def test_a_tls_connection_cut_on_the_way_is_retried_as_any_network_error() -> None:
    """Only a certificate's or a protocol's failure is final; an EOF in the handshake (a
    registry restarting, a proxy's reset) is not."""
    def wrapped(inner: BaseException) -> Exception:
        outer = ConnectionError("wrapped")
        outer.__cause__ = inner
        return outer

    assert _ssl_error(wrapped(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))) is None
    assert _ssl_error(wrapped(OSError("no route"))) is None
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert _ssl_error(wrapped(verify)) is verify


# client certificates (mutual TLS), as docker's certs.d/HOST:PORT/client.{cert,key} -------

def _client_cert(tmp_path: Path) -> tuple[Path, Path]:
    key, crt = tmp_path / "client.key", tmp_path / "client.cert"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=boxlite-client", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return crt, key


@pytest.fixture
def mtls(cert: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """A TLS registry that wants a client certificate: the one it trusts is made here."""
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    client = _client_cert(client_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(client[0]))
    for port in _serve(context):
        yield port, *client


def test_a_client_certificate_in_certs_d_is_presented(named: None, tmp_path: Path,
                                                       cert: tuple[Path, Path],
                                                       mtls: tuple[int, Path, Path]) -> None:
    port, client_cert, client_key = mtls
    registry = f"{NAME}:{port}"
    ours = tmp_path / "certs.d"
    settings = RegistrySettings(retries=3, cert_dirs=(ours,), config_file=tmp_path / "c.toml")
    (ours / registry).mkdir(parents=True)
    (ours / registry / "ca.crt").write_bytes(cert[0].read_bytes())
    sleeps: list[float] = []
    with pytest.raises(RegistryError) as e:  # (none given yet)
        _login(registry, settings, sleeps)
    assert e.value.message.startswith(f"checking the login from {registry}: it asks for a "
                                      "client certificate (")
    assert e.value.hint == (f"put yours in {ours}/{registry}/client.cert and its key in "
                            "client.key there (docker's layout)")
    assert sleeps == []
    (ours / registry / "client.cert").write_bytes(client_cert.read_bytes())
    with pytest.raises(RegistryError, match=r"client\.cert of .* has no key client\.key"):
        _login(registry, settings, [])
    (ours / registry / "client.key").write_bytes(client_key.read_bytes())
    _login(registry, settings, [])  # (no error: it was presented, and accepted)


def test_an_insecure_registry_that_wants_a_client_certificate_stays_on_https(
        named: None, tmp_path: Path, mtls: tuple[int, Path, Path]) -> None:
    """(its TLS failure was taken for plain HTTP: the request went to http:// and the
    registry answered 400, saying nothing of the certificate)"""
    port, client_cert, client_key = mtls
    registry = f"{NAME}:{port}"
    ours = tmp_path / "certs.d"
    settings = RegistrySettings(insecure=frozenset({registry}), cert_dirs=(ours,))
    with pytest.raises(RegistryError, match="it asks for a client certificate"):
        _login(registry, settings, [])
    (ours / registry).mkdir(parents=True)
    (ours / registry / "client.cert").write_bytes(client_cert.read_bytes())
    (ours / registry / "client.key").write_bytes(client_key.read_bytes())
    _login(registry, settings, [])  # (its server certificate unverified, as insecure says)


# proxies of the environment, and docker's forms of insecure registries ---------------------

def test_a_loopback_registry_is_not_reached_through_the_environments_proxy(
        plain_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """As docker's (Go's ProxyFromEnvironment): http_proxy set for a company's network
    made every localhost:5000 registry 'cannot connect'."""
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(4)
    proxy.settimeout(0.2)
    try:
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(var, f"http://127.0.0.1:{proxy.getsockname()[1]}")
        for var in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(var, raising=False)
        for registry in (f"127.0.0.1:{plain_port}", f"localhost:{plain_port}"):
            _login(registry, RegistrySettings(retries=0), [])
        with pytest.raises(TimeoutError):
            proxy.accept()  # (nobody came to the proxy)
    finally:
        proxy.close()


@pytest.mark.parametrize(("entry", "kept"), [
    ("registry.lan:5000", "registry.lan:5000"),
    ("http://registry.lan:5000", "registry.lan:5000"),
    ("https://registry.lan:5000/", "registry.lan:5000"),
    ("10.1.2.3/8", "10.0.0.0/8"),
    ("fd00::/8", "fd00::/8"),
])
def test_insecure_registries_take_dockers_forms(entry: str, kept: str, tmp_path: Path) -> None:
    assert insecure_entry(entry, tmp_path / "config.toml") == kept


def test_an_insecure_cidr_range_covers_the_registries_in_it(named: None, tmp_path: Path) -> None:
    settings = RegistrySettings(insecure=frozenset({"192.0.2.0/24", "127.0.0.0/8"}))
    assert is_insecure("192.0.2.2:5000", settings)
    assert not is_insecure("192.0.3.2:5000", settings)
    assert is_insecure(f"{NAME}:5000", settings)  # (by the address its name resolves to)
    assert not is_insecure(f"{NAME}:5000", RegistrySettings(insecure=frozenset({"10.0.0.0/8"})))
    with pytest.raises(UsageError, match="neither HOST\\[:PORT\\] nor a CIDR range"):
        insecure_entry("10.0.0.0/99", tmp_path / "config.toml")


def test_an_encrypted_client_key_is_said_not_prompted_for(named: None, tmp_path: Path,
                                                           mtls: tuple[int, Path, Path]) -> None:
    """(OpenSSL's pass phrase prompt came up under the progress bars, and the pull
    waited for good; without a terminal: "[Errno 22] Invalid argument")"""
    port, client_cert, client_key = mtls
    registry = f"{NAME}:{port}"
    ours = tmp_path / "certs.d" / registry
    ours.mkdir(parents=True)
    (ours / "client.cert").write_bytes(client_cert.read_bytes())
    subprocess.run(["openssl", "pkey", "-in", str(client_key), "-aes256", "-passout", "pass:x",
                    "-out", str(ours / "client.key")], check=True, capture_output=True)
    with pytest.raises(RegistryError) as e:
        RegistryClient(registry, RegistrySettings(cert_dirs=(tmp_path / "certs.d",)))
    assert e.value.message == (f"the client key {ours / 'client.key'} of {registry} is "
                               "encrypted (it has a pass phrase, which boxlite does not ask for)")
    key = ours / "client.key"  # (openssl empties -out before it reads -in: not the same file)
    assert e.value.hint == f"decrypt it: openssl pkey -in {key} -out {key}.plain && mv {key}.plain {key}"


def test_a_socks_proxy_is_no_matter_for_a_loopback_registry_and_said_for_others(
        plain_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """(httpx without its SOCKS extra: "internal error: ImportError", even for a registry
    no proxy was ever for)"""
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    _login(f"127.0.0.1:{plain_port}", RegistrySettings(retries=0), [])
    try:
        import socksio  # noqa: F401
    except ImportError:
        with pytest.raises(RegistryError, match="is a SOCKS proxy, which boxlite cannot use"):
            RegistryClient("registry.example", RegistrySettings())
