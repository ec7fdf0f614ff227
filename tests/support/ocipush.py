"""Push `ocibuild` images to a registry with the HTTP API v2 (plain, basic or Bearer auth).

Blobs go up monolithically (`POST /v2/NAME/blobs/uploads/`, then `PUT LOCATION?digest=`) unless
the registry has them; manifests are `PUT` with their own media type as Content-Type. An index's
children are pushed by digest before the index.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.ocibuild import Artifact, Blob, Image, Index


class PushError(RuntimeError):
    pass


@dataclass(frozen=True)
class PushedImage:
    """What was pushed where; `reference` is what `boxlite pull` takes."""

    registry: str  # host:port
    repository: str
    tag: str
    artifact: Artifact

    @property
    def reference(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def digest_reference(self) -> str:
        return f"{self.registry}/{self.repository}@{self.manifest_digest}"

    @property
    def manifest_digest(self) -> str:
        return self.artifact.digest

    @property
    def media_type(self) -> str:
        return self.artifact.manifest.media_type

    @property
    def image(self) -> Image:
        """The image itself, or for an index its linux/amd64 entry."""
        a = self.artifact
        return a if isinstance(a, Image) else a.for_platform("linux", "amd64")

    @property
    def config_digest(self) -> str:
        return self.image.config_blob.digest

    @property
    def layer_digests(self) -> tuple[str, ...]:
        return tuple(b.digest for b in self.image.layer_blobs)

    def at(self, host: str) -> str:
        """The same reference through another host:port (a FaultProxy in front of the registry)."""
        return f"{host}/{self.repository}:{self.tag}"


class RegistryClient:
    """A minimal v2 client that answers the registry's auth challenge (Basic or Bearer)."""

    def __init__(self, base_url: str, credentials: tuple[str, str] | None = None,
                 timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.http = httpx.Client(timeout=timeout)
        self._auth: dict[str, str] = {}  # scope -> Authorization header value

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, url: str, repository: str, actions: str = "pull",
                **kw: Any) -> httpx.Response:
        """One request; on 401 it authenticates as challenged and retries once."""
        full = url if url.startswith("http") else self.base_url + url
        scope = f"repository:{repository}:{actions}"
        headers = dict(kw.pop("headers", {}))
        if scope in self._auth:
            headers["Authorization"] = self._auth[scope]
        resp = self.http.request(method, full, headers=headers, **kw)
        if resp.status_code != 401:
            return resp
        self._auth[scope] = self._authenticate(resp.headers.get("WWW-Authenticate", ""), scope)
        headers["Authorization"] = self._auth[scope]
        return self.http.request(method, full, headers=headers, **kw)

    def _authenticate(self, challenge: str, scope: str) -> str:
        scheme, _, rest = challenge.partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if scheme.lower() == "basic":
            if self.credentials is None:
                raise PushError("registry wants basic auth and no credentials were given")
            return basic_auth_header(*self.credentials)
        if scheme.lower() != "bearer":
            raise PushError(f"unsupported auth challenge {challenge!r}")
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        auth = httpx.BasicAuth(*self.credentials) if self.credentials else None
        resp = self.http.get(params["realm"], params=query, auth=auth)
        if resp.status_code != 200:
            raise PushError(f"token server said {resp.status_code}: {resp.text}")
        doc = resp.json()
        return "Bearer " + str(doc.get("token") or doc["access_token"])

    # --- push -------------------------------------------------------------------------------------

    def push_blob(self, repository: str, blob: Blob) -> None:
        head = self.request("HEAD", f"/v2/{repository}/blobs/{blob.digest}", repository, "pull,push")
        if head.status_code == 200:
            return
        start = self.request("POST", f"/v2/{repository}/blobs/uploads/", repository, "pull,push")
        _expect(start, 202, f"start upload of {blob.digest}")
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base_url + location
        sep = "&" if "?" in location else "?"
        put = self.request("PUT", f"{location}{sep}digest={blob.digest}", repository, "pull,push",
                           content=blob.data, headers={"Content-Type": "application/octet-stream"})
        _expect(put, 201, f"upload of {blob.digest}")

    def push_manifest(self, repository: str, reference: str, manifest: Blob) -> None:
        resp = self.request("PUT", f"/v2/{repository}/manifests/{reference}", repository, "pull,push",
                            content=manifest.data, headers={"Content-Type": manifest.media_type})
        _expect(resp, 201, f"manifest {repository}:{reference}")
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != manifest.digest:
            raise PushError(f"registry stored {got}, expected {manifest.digest}")

    def push(self, repository: str, tag: str, artifact: Artifact) -> None:
        if isinstance(artifact, Index):
            for im in artifact.images:
                self.push(repository, im.digest, im)
        else:
            for blob in artifact.blobs():
                self.push_blob(repository, blob)
        self.push_manifest(repository, tag, artifact.manifest)


def push(registry: Any, repository: str, artifact: Artifact, tag: str = "latest",
         credentials: tuple[str, str] | None = None, host: str | None = None) -> PushedImage:
    """Push `artifact` as `repository:tag` to `registry` (a RegistryServer: `.url`, `.host`,
    `.credentials`); `credentials` default to the registry's first account."""
    creds = credentials if credentials is not None else getattr(registry, "credentials", None)
    reg_host = host or registry.host
    with RegistryClient(f"http://{reg_host}", creds) as client:
        client.push(repository, tag, artifact)
    return PushedImage(reg_host, repository, tag, artifact)


def basic_auth_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _expect(resp: httpx.Response, status: int, what: str) -> None:
    if resp.status_code != status:
        raise PushError(f"{what}: HTTP {resp.status_code} {resp.text[:500]}")
