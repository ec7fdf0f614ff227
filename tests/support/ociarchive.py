"""Write `ocibuild` images as files for `boxlite load -i`: OCI image layouts and `docker save` tars.

- `write_oci_layout(dir, {ref_name: artifact})` and `write_oci_layout_tar(tar, ...)`: `oci-layout`,
  `index.json` (one entry per ref, annotated `org.opencontainers.image.ref.name`), `blobs/sha256/`.
- `write_docker_save(tar, {"repo:tag": image}, layout="legacy")`: docker <= 24
  (`manifest.json`, `repositories`, `<id>/layer.tar`, `<config hex>.json`); `layout="oci"`: docker
  >= 25 (an OCI layout with uncompressed layers, plus `manifest.json` and `repositories`).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from tests.support.ocibuild import EPOCH, MT_OCI_INDEX, Artifact, Blob, Image, Index

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def layout_files(images: Mapping[str, Artifact],
                 extra_annotations: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, bytes]:
    """The files of an OCI image layout: path -> bytes. `images` maps ref names to artifacts."""
    files: dict[str, bytes] = {"oci-layout": OCI_LAYOUT}
    entries = []
    for ref_name, artifact in images.items():
        for blob in _all_blobs(artifact):
            files[_blob_path(blob.digest)] = blob.data
        annotations = {REF_NAME: ref_name, **(extra_annotations or {}).get(ref_name, {})}
        entries.append(artifact.manifest.descriptor(annotations=annotations))
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries}
    files["index.json"] = json.dumps(index, indent=2).encode()
    return files


def write_oci_layout(dest: Path, images: Mapping[str, Artifact]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for rel, data in layout_files(images).items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return dest


def write_oci_layout_tar(dest: Path, images: Mapping[str, Artifact]) -> Path:
    return write_tar(dest, layout_files(images))


def write_docker_save(dest: Path, images: Mapping[str, Image],
                      layout: Literal["legacy", "oci"] = "legacy") -> Path:
    """A `docker save` tarball of `images` (keys: RepoTags such as "busybox:latest")."""
    files = _docker_save_legacy(images) if layout == "legacy" else _docker_save_oci(images)
    return write_tar(dest, files)


def _docker_save_legacy(images: Mapping[str, Image]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for repo_tag, image in images.items():
        config = image.config_blob
        files[f"{config.digest[7:]}.json"] = config.data
        parent, layer_paths = "", []
        for layer in image.layers:
            layer_id = hashlib.sha256(f"{parent}\n{layer.diff_id}".encode()).hexdigest()
            v1 = {"id": layer_id, "created": "1970-01-01T00:00:00Z", "container_config": {}}
            if parent:
                v1["parent"] = parent
            files[f"{layer_id}/VERSION"] = b"1.0"
            files[f"{layer_id}/json"] = json.dumps(v1).encode()
            files[f"{layer_id}/layer.tar"] = layer.tar
            layer_paths.append(f"{layer_id}/layer.tar")
            parent = layer_id
        manifest.append({"Config": f"{config.digest[7:]}.json", "RepoTags": [repo_tag],
                         "Layers": layer_paths})
        repo, _, tag = repo_tag.rpartition(":")
        repositories.setdefault(repo, {})[tag] = parent
    files["manifest.json"] = json.dumps(manifest).encode()
    files["repositories"] = json.dumps(repositories).encode()
    return files


def _docker_save_oci(images: Mapping[str, Image]) -> dict[str, bytes]:
    plain = {rt: im.with_compression("none").replace(schema="oci") for rt, im in images.items()}
    names = {rt: {IMAGE_NAME: _docker_io_name(rt)} for rt in plain}
    files = layout_files({rt: im for rt, im in plain.items()}, names)
    # docker annotates ref.name with the tag only
    index = json.loads(files["index.json"])
    for entry in index["manifests"]:
        entry["annotations"][REF_NAME] = entry["annotations"][REF_NAME].rpartition(":")[2]
    files["index.json"] = json.dumps(index, indent=2).encode()
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for repo_tag, image in plain.items():
        manifest.append({"Config": _blob_path(image.config_blob.digest), "RepoTags": [repo_tag],
                         "Layers": [_blob_path(b.digest) for b in image.layer_blobs]})
        repo, _, tag = repo_tag.rpartition(":")
        repositories.setdefault(repo, {})[tag] = image.layer_blobs[-1].digest[7:]
    files["manifest.json"] = json.dumps(manifest).encode()
    files["repositories"] = json.dumps(repositories).encode()
    return files


def _docker_io_name(repo_tag: str) -> str:
    first = repo_tag.split("/", 1)[0]
    if "/" in repo_tag and ("." in first or ":" in first or first == "localhost"):
        return repo_tag
    return f"docker.io/{repo_tag}" if "/" in repo_tag else f"docker.io/library/{repo_tag}"


def _all_blobs(artifact: Artifact) -> list[Blob]:
    if isinstance(artifact, Index):
        return [*artifact.blobs(), *(im.manifest for im in artifact.images), artifact.manifest]
    return [*artifact.blobs(), artifact.manifest]


def _blob_path(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    return f"blobs/{algo}/{hexd}"


def write_tar(dest: Path, files: Mapping[str, bytes]) -> Path:
    """A deterministic tar of `files` (path -> bytes), parent directories included."""
    dirs = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tar.addfile(info)
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(files[path]), 0o644, EPOCH
            tar.addfile(info, io.BytesIO(files[path]))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(buf.getvalue())
    return dest
