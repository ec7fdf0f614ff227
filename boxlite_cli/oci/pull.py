"""Pulling an image: resolve the reference, pick linux/amd64, fetch what the store lacks.

The tag is written last, after the manifest, its config and every layer are in the
store and verified, so an interrupted pull leaves no image behind, only verified
blobs (and one resumable partial per blob) that the next pull reuses.
"""

from __future__ import annotations

import hashlib
import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from boxlite_cli.errors import DiskError, ImageError
from boxlite_cli.oci.mediatypes import (
    MAX_CONFIG_BYTES,
    MAX_INDEX_DEPTH,
    check_config,
    check_manifest,
    choose_platform,
    document_kind,
    parse_json_document,
)
from boxlite_cli.oci.reference import Reference
from boxlite_cli.oci.store import Image, ImageStore

if TYPE_CHECKING:  # httpx is imported only by the commands that talk to a registry
    from boxlite_cli.oci.registry import RegistryClient

PARALLEL_LAYERS = 3
T = TypeVar("T")
R = TypeVar("R")


class PullProgress(Protocol):
    """What a pull reports, so that a front end can draw it (or not)."""

    def resolved(self, reference: Reference, digest: str, layers: list[tuple[str, int]]) -> None:
        """The manifest is known: `layers` are (digest, size) in order."""

    def advance(self, digest: str, completed: int) -> None:
        """`completed` bytes of blob `digest` are in."""

    def finished(self, digest: str, status: str) -> None:
        """Blob `digest` is done: 'Already exists' or 'Pull complete'."""

    def unpacking(self) -> None:
        """Every blob is in: the image's file system is being made."""


class NoProgress:
    def resolved(self, reference: Reference, digest: str, layers: list[tuple[str, int]]) -> None:
        pass

    def advance(self, digest: str, completed: int) -> None:
        pass

    def finished(self, digest: str, status: str) -> None:
        pass

    def unpacking(self) -> None:
        pass


@dataclass(frozen=True)
class PullResult:
    image: Image
    repo_digest: str  # what the registry calls the reference (an index or a manifest)
    downloaded: bool  # False when the store had everything already


def map_in_daemon_threads(fn: Callable[[T], R], items: list[T], workers: int) -> list[R]:
    """[fn(item) for item in items], `workers` at a time; the first error is raised
    once the running calls end, and no new call starts after it.

    In daemon threads, unlike an executor's: the interpreter joins those at exit, so a
    Ctrl-C waited for a download stuck in a read (up to its timeout, for each retry).
    Now the interrupted process exits at once; what it leaves is what a killed pull
    leaves (partial blobs, resumed by the next pull)."""
    results: list[R | None] = [None] * len(items)
    errors: list[BaseException] = []
    todo: queue.SimpleQueue[tuple[int, T]] = queue.SimpleQueue()
    for entry in enumerate(items):
        todo.put(entry)

    def work() -> None:
        while not errors:
            try:
                i, item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[i] = fn(item)
            except BaseException as e:  # (raised in the caller's thread below)
                errors.append(e)

    threads = [threading.Thread(target=work, name=f"pull-{n}", daemon=True)
               for n in range(min(workers, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # (a Ctrl-C interrupts this wait)
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]  # (every item has its result)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Puller:
    """Pulls references of one registry into a store."""

    def __init__(self, store: ImageStore, client: RegistryClient,
                 progress: PullProgress | None = None) -> None:
        self.store = store
        self.client = client
        self.progress = progress or NoProgress()

    def _manifest(self, ref: Reference, what: str) -> tuple[bytes, str, dict[str, Any], str]:
        """Fetch and verify a manifest or index by tag or digest: (raw, digest, doc, kind)."""
        raw, content_type, advertised = self.client.get_manifest(ref.repository, what)
        digest = _sha256(raw)
        if what.startswith("sha256:") and digest != what:
            raise ImageError(f"digest mismatch for the manifest of {ref.short}: asked for {what}, "
                             f"the registry sent {digest}")
        if advertised and advertised.startswith("sha256:") and advertised != digest:
            # (by tag: the registry's word is all there is to hold the content to)
            raise ImageError(f"digest mismatch for the manifest of {ref.short}: the registry "
                             f"says {advertised}, what it sent is {digest}")
        try:
            doc = parse_json_document(raw, "manifest")
        except ImageError as e:  # (a proxy's or a login page's HTML, and the like)
            sent = f", it sent {content_type.split(';')[0]}" if content_type else ""
            raise ImageError(f"{e.message} from {self.client.registry} for {ref.short}{sent}",
                             hint="is it a registry (or a proxy's page in between)?") from None
        return raw, digest, doc, document_kind(doc, content_type)

    def pull(self, ref: Reference) -> PullResult:
        if ref.digest and ref.tag:  # (docker's: the digest names the image; the tag is dropped)
            ref = Reference(ref.registry, ref.repository, None, ref.digest)
        raw, repo_digest, doc, kind = self._manifest(ref, ref.digest or ref.tag or "latest")
        manifest_raw, manifest_digest = raw, repo_digest
        for _ in range(MAX_INDEX_DEPTH + 1):
            if kind != "index":
                break
            try:
                desc = choose_platform(doc)
            except ImageError as e:
                raise ImageError(f"{ref.short}: {e}") from None
            manifest_raw, manifest_digest, doc, kind = self._manifest(ref, str(desc["digest"]))
        else:
            raise ImageError(f"{ref.short}: indexes nested too deep (more than {MAX_INDEX_DEPTH})")
        manifest = check_manifest(doc)
        config_desc = manifest["config"]
        layers = [(str(d["digest"]), int(d["size"])) for d in manifest["layers"]]
        self.progress.resolved(ref, repo_digest, layers)
        downloaded = False
        if config_desc["size"] > MAX_CONFIG_BYTES:
            raise ImageError(f"the image config of {ref.short} is larger than {MAX_CONFIG_BYTES} bytes")
        downloaded |= self._fetch(ref, str(config_desc["digest"]), int(config_desc["size"]), quiet=True)
        config = self.store.read_json_blob(str(config_desc["digest"]))
        check_config(config)
        self._check_space(ref, layers)
        fetched = map_in_daemon_threads(lambda layer: self._fetch(ref, *layer), layers,
                                        PARALLEL_LAYERS)
        downloaded |= any(fetched)
        with self.store.ingest(manifest_digest, len(manifest_raw)) as ingest:
            if not ingest.done:
                ingest.restart()
                ingest.write(manifest_raw)
                ingest.commit()
        if not self.store.rootfs_path_of(str(config_desc["digest"])).is_file():
            self.progress.unpacking()
        self.store.unpack_before_naming(ref, manifest_digest)  # (or checked against it)
        # (docker's "Downloaded newer image" whenever the name is new here or moved)
        downloaded |= self.store.tags().get(str(ref)) != manifest_digest
        self.store.tag(ref, manifest_digest)
        if ref.digest is None:
            self.store.tag(Reference(ref.registry, ref.repository, None, repo_digest), manifest_digest)
        image = self.store.lookup(ref)
        return PullResult(image, repo_digest, downloaded)

    def _check_space(self, ref: Reference, layers: list[tuple[str, int]]) -> None:
        """Refuse a pull whose layers the disk cannot hold, before downloading them (a
        manifest can declare any size: a registry that then sends without end would
        fill the disk)."""
        needed = sum(max(0, size - self.store.partial_size(digest))
                     for digest, size in dict(layers).items()
                     if not self.store.has_blob(digest))
        free = shutil.disk_usage(self.store.root if self.store.root.is_dir()
                                 else self.store.root.parent).free
        if needed > free:
            raise DiskError(f"not enough disk space to pull {ref.short}: its layers are "
                            f"{needed / 1e6:.1f} MB and {free / 1e6:.1f} MB are free under "
                            f"{self.store.root}", hint="free some disk space and try again")

    def _fetch(self, ref: Reference, digest: str, size: int, quiet: bool = False) -> bool:
        """Make sure the store has a blob; True when it had to be downloaded."""
        advance: Callable[[int], None] = (
            (lambda _: None) if quiet else (lambda done: self.progress.advance(digest, done)))
        with self.store.ingest(digest, size) as ingest:
            if ingest.done:
                if not quiet:
                    self.progress.finished(digest, "Already exists")
                return False
            self.client.fetch_blob(ref.repository, digest, ingest, advance)
        if not quiet:
            self.progress.finished(digest, "Pull complete")
        return True
