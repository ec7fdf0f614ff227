"""OCI images built in pure Python: tar layers, configs, manifests, indexes; deterministic digests.

An `Image` or `Index` is a description; its blobs (and so its digests) are computed from it, so
the same description always yields the same digests. Nothing here talks to a registry (see
`ocipush`) or writes files (see `ociarchive`).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import zstandard

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_IN_TOTO = "application/vnd.in-toto+json"

Compression = Literal["gzip", "zstd", "none"]
Schema = Literal["oci", "docker"]
EntryKind = Literal["file", "dir", "symlink", "hardlink", "fifo"]

EPOCH = 1_700_000_000  # mtime of every tar member, so digests are reproducible
CREATED = "2023-11-14T22:13:20Z"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_LAYER_TYPES: dict[tuple[Schema, Compression], str] = {
    ("oci", "gzip"): MT_OCI_LAYER_GZIP,
    ("oci", "zstd"): MT_OCI_LAYER_ZSTD,
    ("oci", "none"): MT_OCI_LAYER,
    ("docker", "gzip"): MT_DOCKER_LAYER_GZIP,
    ("docker", "none"): MT_DOCKER_LAYER,
    ("docker", "zstd"): MT_OCI_LAYER_ZSTD,  # what docker itself writes for zstd layers
}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    """Content plus its media type; `digest` and `size` follow from `data`."""

    media_type: str
    data: bytes

    @cached_property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


# --- tar layers --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One tar member. `path` is written as given (hostile names like `../x` or `/x` included)."""

    path: str
    kind: EntryKind = "file"
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    link: str = ""
    xattrs: Mapping[str, str] = field(default_factory=dict)
    mtime: int = EPOCH


def file(path: str, data: bytes | str = b"", mode: int = 0o644, uid: int = 0, gid: int = 0,
         xattrs: Mapping[str, str] | None = None) -> Entry:
    raw = data.encode() if isinstance(data, str) else data
    return Entry(path, "file", raw, mode, uid, gid, xattrs=dict(xattrs or {}))


def directory(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "dir", mode=mode, uid=uid, gid=gid)


def symlink(path: str, target: str, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "symlink", mode=0o777, uid=uid, gid=gid, link=target)


def hardlink(path: str, target: str) -> Entry:
    """A hard link to `target`, a member path of this layer (no leading slash)."""
    return Entry(path, "hardlink", mode=0o644, link=target)


def whiteout(path: str) -> Entry:
    """Deletes `path` of a lower layer: an empty `dir/.wh.name`."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return file(f"{parent}/.wh.{name}" if parent else f".wh.{name}", b"", 0o644)


def opaque(dir_path: str) -> Entry:
    """Hides everything lower layers had in `dir_path`: `dir/.wh..wh..opq`."""
    return file(f"{dir_path.rstrip('/')}/.wh..wh..opq", b"", 0o644)


def layer_tar(entries: Iterable[Entry], prefix: str = "") -> bytes:
    """An uncompressed PAX tar of `entries`, each name prefixed with `prefix` (e.g. "./")."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(prefix + e.path)
            info.mtime = e.mtime
            info.uid, info.gid = e.uid, e.gid
            info.uname = info.gname = ""
            info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[e.kind]
            info.mode = e.mode if e.mode is not None else (0o755 if e.kind == "dir" else 0o644)
            if e.kind == "hardlink":
                info.linkname = prefix + e.link
            elif e.kind == "symlink":
                info.linkname = e.link
            if e.xattrs:
                info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e.xattrs.items()}
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def compress(data: bytes, compression: Compression) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


@dataclass(frozen=True)
class Layer:
    """A layer: its uncompressed tar (`diff_id` is its digest) and how it is shipped."""

    tar: bytes
    compression: Compression = "gzip"
    media_type: str | None = None  # overrides the one derived from schema + compression
    declared_size: int | None = None  # a lie in the manifest's descriptor (hostile images)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[Entry], compression: Compression = "gzip", prefix: str = "") -> Layer:
        return cls(layer_tar(entries, prefix), compression)

    @cached_property
    def diff_id(self) -> str:
        return sha256_digest(self.tar)

    @cached_property
    def compressed(self) -> bytes:
        return compress(self.tar, self.compression)

    def blob(self, schema: Schema) -> Blob:
        return Blob(self.media_type or _LAYER_TYPES[(schema, self.compression)], self.compressed)

    def descriptor(self, schema: Schema) -> dict[str, Any]:
        d = self.blob(schema).descriptor()
        if self.declared_size is not None:
            d["size"] = self.declared_size
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


# --- images and indexes ------------------------------------------------------------------------

@dataclass(frozen=True)
class Image:
    """One platform's image: layers + the container config (`Env`, `Cmd`, `User`...)."""

    layers: tuple[Layer, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    schema: Schema = "oci"
    diff_ids: tuple[str, ...] | None = None  # overrides the true ones (hostile images)
    config_media_type: str | None = None
    raw_config: bytes | None = None  # replaces the generated config blob entirely
    annotations: Mapping[str, str] = field(default_factory=dict)  # on the manifest itself
    index_annotations: Mapping[str, str] = field(default_factory=dict)  # on its index entry

    def replace(self, **changes: Any) -> Image:
        return dataclasses.replace(self, **changes)

    def with_compression(self, compression: Compression) -> Image:
        return self.replace(layers=tuple(dataclasses.replace(la, compression=compression)
                                         for la in self.layers))

    @property
    def platform(self) -> dict[str, str]:
        p = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            p["variant"] = self.variant
        return p

    @cached_property
    def config_blob(self) -> Blob:
        mt = self.config_media_type or (MT_OCI_CONFIG if self.schema == "oci" else MT_DOCKER_CONFIG)
        if self.raw_config is not None:
            return Blob(mt, self.raw_config)
        doc: dict[str, Any] = {
            "created": CREATED,
            **self.platform,
            "config": dict(self.config),
            "rootfs": {"type": "layers",
                       "diff_ids": list(self.diff_ids or [la.diff_id for la in self.layers])},
            "history": [{"created": CREATED, "created_by": f"boxlite tests: layer {i}"}
                        for i in range(len(self.layers))],
        }
        return Blob(mt, canonical_json(doc))

    @property
    def layer_blobs(self) -> list[Blob]:
        return [la.blob(self.schema) for la in self.layers]

    @cached_property
    def manifest(self) -> Blob:
        mt = MT_OCI_MANIFEST if self.schema == "oci" else MT_DOCKER_MANIFEST
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": mt,
            "config": self.config_blob.descriptor(),
            "layers": [la.descriptor(self.schema) for la in self.layers],
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return Blob(mt, json.dumps(doc, indent=3).encode())

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def blobs(self) -> list[Blob]:
        """Config and layer blobs (not the manifest), without duplicates."""
        return _unique([self.config_blob, *self.layer_blobs])

    def index_descriptor(self) -> dict[str, Any]:
        d = self.manifest.descriptor(platform=self.platform)
        if self.index_annotations:
            d["annotations"] = dict(self.index_annotations)
        return d


@dataclass(frozen=True)
class Index:
    """A multi-platform index: OCI image index (`oci`) or docker manifest list (`docker`)."""

    images: tuple[Image, ...]
    schema: Schema = "oci"
    annotations: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def manifest(self) -> Blob:
        mt = MT_OCI_INDEX if self.schema == "oci" else MT_DOCKER_LIST
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt,
                               "manifests": [im.index_descriptor() for im in self.images]}
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return Blob(mt, json.dumps(doc, indent=3).encode())

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def blobs(self) -> list[Blob]:
        return _unique([b for im in self.images for b in im.blobs()])

    def for_platform(self, os: str, architecture: str) -> Image:
        for im in self.images:
            if (im.os, im.architecture) == (os, architecture):
                return im
        raise KeyError(f"{os}/{architecture}")


Artifact = Image | Index


def _unique(blobs: Sequence[Blob]) -> list[Blob]:
    seen: dict[str, Blob] = {}
    for b in blobs:
        seen.setdefault(b.digest, b)
    return list(seen.values())
