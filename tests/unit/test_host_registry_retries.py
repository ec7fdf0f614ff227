"""The backoff between a registry request's attempts: 0.5 s, then 1 s, doubling (at most
8 s), with +-25 % jitter for errors and 5xx answers, none for a blob download that
breaks off (it resumes). Seen through the client's injected sleep, never a clock: the
e2e pull tests count the attempts, these check the delays asked for between them."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from boxlite_cli.errors import RegistryError
from boxlite_cli.oci.registry import RegistryClient
from boxlite_cli.oci.store import BlobIngest
from boxlite_cli.state.settings import RegistrySettings

REGISTRY = "registry.example"  # (not loopback: HTTPS, and no scheme probe)


def _client(handler: httpx.MockTransport, retries: int, sleeps: list[float]) -> RegistryClient:
    client = RegistryClient(REGISTRY, RegistrySettings(retries=retries), sleep=sleeps.append)
    client._http.close()
    client._http = httpx.Client(transport=handler)  # (the registry, answered in-process)
    return client


def _always(status: int, seen: list[httpx.Request]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)
    return httpx.MockTransport(answer)


@pytest.mark.parametrize(("jitter", "factor"), [(0.0, 0.75), (0.5, 1.0), (0.999999, 1.25)])
def test_server_errors_back_off_half_a_second_then_one_with_jitter(
        monkeypatch: pytest.MonkeyPatch, jitter: float, factor: float) -> None:
    monkeypatch.setattr(random, "random", lambda: jitter)
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    with _client(_always(500, seen), 2, sleeps) as client, \
            pytest.raises(RegistryError, match=r"HTTP 500\)?, gave up after 3 attempts$"):
        client.get_manifest("busybox", "latest")
    assert len(seen) == 3  # (1 + 2 retries, a sleep between each two)
    assert sleeps == pytest.approx([0.5 * factor, 1.0 * factor], abs=1e-5)


def test_the_backoff_doubles_up_to_eight_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.5)  # (no jitter)
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    with _client(_always(503, seen), 6, sleeps) as client, pytest.raises(RegistryError):
        client.get_manifest("busybox", "latest")
    assert len(seen) == 7
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


@pytest.mark.parametrize(("retry_after", "waits"), [
    ("5", [5.0, 5.0]),
    ("0.2", [0.5, 1.0]),        # (shorter than the backoff: the backoff)
    ("3600", [0.5, 1.0]),       # (past a minute: not waited, the error says it)
    ("Wed, 21 Oct 2015 07:28:00 GMT", [0.5, 1.0]),
])
def test_a_rate_limits_retry_after_is_waited_and_said(monkeypatch: pytest.MonkeyPatch,
                                                      retry_after: str, waits: list[float]) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.5)  # (no jitter)
    sleeps: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": retry_after})

    with _client(httpx.MockTransport(answer), 2, sleeps) as client, \
            pytest.raises(RegistryError) as e:
        client.get_manifest("busybox", "latest")
    assert sleeps == waits
    said = f"{retry_after} s" if retry_after.isdigit() else retry_after
    assert e.value.hint == (f"the registry limits how often it is asked (a rate limit; it asks "
                            f"to wait: {said}): wait, then retry")


def test_no_retries_means_no_backoff() -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    with _client(_always(500, seen), 0, sleeps) as client, \
            pytest.raises(RegistryError, match=r"HTTP 500, gave up after 1 attempt$"):
        client.get_manifest("busybox", "latest")
    assert len(seen) == 1 and sleeps == []


class _Body(httpx.SyncByteStream):
    """A streamed body: `data`, then the connection closed under it where `cut`."""

    def __init__(self, data: bytes, cut: bool = False) -> None:
        self.data, self.cut = data, cut

    def __iter__(self) -> Iterator[bytes]:
        if self.data:
            yield self.data
        if self.cut:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete "
                                            "message body")


def test_a_download_that_breaks_off_resumes_after_half_a_second_then_one(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 4
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    ranges: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("range"))
        start = int(request.headers["range"][6:-1]) if "range" in request.headers else 0
        if len(ranges) < 3:  # (the first two break off, 100 bytes in)
            return httpx.Response(206 if start else 200, stream=_Body(blob[start:start + 100], cut=True))
        return httpx.Response(206, stream=_Body(blob[start:]))

    sleeps: list[float] = []
    ingest = BlobIngest(tmp_path / "blob", tmp_path / "blob.partial", digest, len(blob))
    with _client(httpx.MockTransport(answer), 2, sleeps) as client:
        client.fetch_blob("busybox", digest, ingest)
    assert (tmp_path / "blob").read_bytes() == blob
    assert ranges == [None, "bytes=100-", "bytes=200-"]
    assert sleeps == [0.5, 1.0]


def test_a_download_that_keeps_breaking_off_gives_up_after_its_retries(tmp_path: Path) -> None:
    digest = "sha256:" + "0" * 64
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=_Body(b"", cut=True))

    sleeps: list[float] = []
    ingest = BlobIngest(tmp_path / "blob", tmp_path / "blob.partial", digest, 10)
    with _client(httpx.MockTransport(answer), 2, sleeps) as client, \
            pytest.raises(RegistryError, match="gave up after 3 attempts"):
        client.fetch_blob("busybox", digest, ingest)
    assert len(seen) == 3 and sleeps == [0.5, 1.0]


def test_a_blob_shorter_than_its_descriptor_says_how_much_came(tmp_path: Path) -> None:
    """The count is the bytes that came (it said 0: read after the partial was dropped),
    and the partial is gone."""
    from boxlite_cli.errors import ImageError

    blob = b"x" * 127
    ingest = BlobIngest(tmp_path / "blob", tmp_path / "blob.partial",
                        "sha256:" + hashlib.sha256(blob).hexdigest(), 129)
    ingest.write(blob)
    with pytest.raises(ImageError, match="is truncated: got 127 of 129 bytes"):
        ingest.commit()
    assert not (tmp_path / "blob").exists() and not (tmp_path / "blob.partial").exists()


class _Stall(httpx.SyncByteStream):
    """A body that stops coming after its first bytes: the read times out."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"{"
        raise httpx.ReadTimeout("timed out")


def test_a_manifest_that_stalls_mid_body_is_retried_then_said_in_one_line() -> None:
    """(ReadTimeout from the body's read reached the user as `internal error`.)"""
    seen: list[httpx.Request] = []
    manifest = b'{"schemaVersion": 2}'

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(200, stream=_Stall())
        return httpx.Response(200, content=manifest)

    sleeps: list[float] = []
    with _client(httpx.MockTransport(answer), 1, sleeps) as client:
        assert client.get_manifest("busybox", "latest")[0] == manifest
    assert len(seen) == 2 and sleeps
    seen.clear()
    with _client(httpx.MockTransport(lambda r: (seen.append(r), httpx.Response(
            200, stream=_Stall()))[1]), 1, sleeps) as client, pytest.raises(
            RegistryError, match=r"^fetching the manifest from registry.example: timed out "
                                 r"waiting for the registry, gave up after 2 attempts$"):
        client.get_manifest("busybox", "latest")
    assert len(seen) == 2


def test_an_error_answer_is_read_at_most_64_kib_and_a_stalled_one_says_its_status() -> None:
    """A registry's error body is read for its message only so far: one that never
    ends, or stalls, still gives the one line."""
    from boxlite_cli.errors import NotFound

    class Endless(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            while True:
                yield b" " * 65536

    for stream in (Endless(), _Stall()):
        with _client(httpx.MockTransport(lambda _r, s=stream: httpx.Response(404, stream=s)),
                     0, []) as client, pytest.raises(NotFound, match=r"HTTP 404$"):
            client.get_manifest("busybox", "latest")


def test_a_proxy_that_refuses_is_named_not_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """(a dead https_proxy was "cannot connect ... check the registry address": the
    registry was up)"""
    for var in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with _client(httpx.MockTransport(refused), 0, []) as client, \
            pytest.raises(RegistryError) as e:
        client.get_manifest("busybox", "latest")
    assert e.value.message == (f"fetching the manifest from {REGISTRY}: cannot connect through "
                               "the proxy http://127.0.0.1:9 ([Errno 111] Connection refused), "
                               "gave up after 1 attempt")
    assert e.value.hint == ("check the proxy the environment names, or set "
                            f"no_proxy={REGISTRY} to reach it directly")
    monkeypatch.setenv("no_proxy", REGISTRY)  # (not through it: the registry's own failure)
    with _client(httpx.MockTransport(refused), 0, []) as client, \
            pytest.raises(RegistryError, match="cannot connect \\(\\[Errno 111\\]"):
        client.get_manifest("busybox", "latest")
