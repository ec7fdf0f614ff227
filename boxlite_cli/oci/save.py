"""`boxlite save`: images of the store as one tar, as docker 25 writes it: an OCI image
layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) with docker's `manifest.json`
beside it, so that `docker load`, `podman load`, skopeo and `boxlite load` all read it.

Each blob is written once, however many images share it, byte for byte as the store
holds it (a manifest keeps its digest). Every blob is opened before the first byte is
written: an `rmi` and its garbage collection meanwhile cannot cut the archive short.
Members carry no owner, time or mode of this host (root, the epoch, 0644).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from boxlite_cli.errors import ImageError
from boxlite_cli.oci.mediatypes import OCI_INDEX, OCI_MANIFEST
from boxlite_cli.oci.reference import Reference
from boxlite_cli.oci.store import Image, ImageStore

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


@dataclass(frozen=True)
class Saved:
    """One image to save, and the names it goes under (none: saved by id)."""

    image: Image
    names: tuple[Reference, ...]


def _blob_member(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _tarinfo(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.uid, info.gid = size, 0, 0, 0
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    return info


def _descriptor(image: Image, store: ImageStore, name: Reference | None) -> dict[str, Any]:
    desc: dict[str, Any] = {
        "mediaType": image.manifest.get("mediaType") or OCI_MANIFEST,
        "digest": image.manifest_digest,
        "size": store.blob_path(image.manifest_digest).stat().st_size,
    }
    if name is not None:
        # (ref.name, when there is a tag: the OCI spec wants it not empty)
        desc["annotations"] = {CONTAINERD_NAME: str(name), **({REF_NAME: name.tag}
                                                              if name.tag else {})}
    return desc


def index_json(store: ImageStore, images: list[Saved]) -> dict[str, Any]:
    """The layout's index: a descriptor per name of each image (one without a name for
    an image saved by id)."""
    manifests = [_descriptor(s.image, store, name) for s in images
                 for name in (s.names or (None,))]
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}


def docker_manifest(images: list[Saved]) -> list[dict[str, Any]]:
    """docker's manifest.json: per image, its config, its names and its layers."""
    return [{"Config": _blob_member(s.image.id),
             "RepoTags": [n.short for n in s.names if n.tag and not n.digest] or None,
             "Layers": [_blob_member(d) for d in s.image.layers]} for s in images]


def blobs_of(images: list[Saved]) -> list[str]:
    """Every blob the images need, each once, in a stable order."""
    seen: dict[str, None] = {}
    for s in images:
        for digest in (s.image.manifest_digest, s.image.id, *s.image.layers):
            seen.setdefault(digest, None)
    return list(seen)


@contextlib.contextmanager
def _opened(store: ImageStore, digests: list[str]) -> Iterator[dict[str, IO[bytes]]]:
    files: dict[str, IO[bytes]] = {}
    try:
        for digest in digests:
            try:
                files[digest] = open(store.blob_path(digest), "rb")  # noqa: SIM115
            except FileNotFoundError:
                raise ImageError(f"blob {digest} is missing from the store",
                                 hint="pull or load the image again") from None
        yield files
    finally:
        for f in files.values():
            f.close()


def save(store: ImageStore, images: list[Saved], out: IO[bytes]) -> None:
    """Write the images as one (uncompressed) tar to `out`."""
    names = {n for s in images for n in s.names}
    if len(names) != sum(len(s.names) for s in images):
        raise ImageError("a name was given for two images")  # (the caller dedups)
    digests = blobs_of(images)
    with _opened(store, digests) as files, \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(_tarinfo(directory, directory=True))
        for digest in digests:
            f = files[digest]
            tar.addfile(_tarinfo(_blob_member(digest), os.fstat(f.fileno()).st_size), f)
        for name, doc in (("oci-layout", {"imageLayoutVersion": "1.0.0"}),
                          ("index.json", index_json(store, images)),
                          ("manifest.json", docker_manifest(images))):
            data = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
            tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
