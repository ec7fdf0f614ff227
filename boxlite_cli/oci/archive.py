"""`boxlite load`: images from `docker save` tarballs and OCI image layouts (directory or tar).

The input is untrusted. A tar is read once, as a stream, and never extracted by name:
  - `blobs/sha256/<hex>` members go straight into the store's verified ingest, under
    the digest their name states (a mismatch fails the load);
  - layer files of docker's older format (`<id>/layer.tar`, podman's `<hex>.tar`) are
    spooled to an anonymous temporary file while hashed, then ingested under that hash;
  - small JSON documents (`manifest.json`, `index.json`, `<id>.json`...) are kept in
    memory, 4 MiB at most each;
  - links are never read as blobs, except that a docker layer path may be a link to
    another layer member of the same archive (docker writes repeated layers that way):
    it resolves within the archive's own member names, never on the host.
Names must be relative, without `..` or control characters. Every blob of every image
is in the store before the first tag is written, so a failed load leaves no tag behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from boxlite_cli.compression import DECOMPRESSION_ERRORS, open_decompressed
from boxlite_cli.errors import BoxliteError, ImageError
from boxlite_cli.oci.mediatypes import (
    MAX_INDEX_DEPTH,
    OCI_MANIFEST,
    check_config,
    check_descriptor,
    check_manifest,
    choose_platform,
    document_kind,
    parse_json_document,
)
from boxlite_cli.oci.reference import Reference, parse_reference, unnamed_reference

if TYPE_CHECKING:
    from boxlite_cli.oci.store import ImageStore

MAX_JSON = 4 << 20
MAX_LINK_HOPS = 8
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{64})\Z")
_JSON_NAMES = frozenset({"oci-layout", "index.json", "manifest.json", "repositories"})
_LAYER_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst")
_ODD = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass(frozen=True)
class LoadResult:
    """What a load kept: the names it tagged, and the ids of the images it kept with
    none (docker's `Loaded image ID:`; listed as `<none>` until tagged)."""

    loaded: list[Reference]
    unnamed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user is told besides


@dataclass(frozen=True)
class _Planned:
    names: list[Reference]
    manifest_digest: str
    repo_digest: str | None = None  # what an OCI layout's index.json calls the image
    tag_only: str = ""  # the ref.name of a layout's image that names no repository


# reading the input ----------------------------------------------------------------------

class _Source(Protocol):
    what: str

    def has(self, name: str) -> bool: ...

    def read(self, name: str) -> bytes: ...

    def ingest(self, name: str, digest: str | None = None, size: int | None = None) -> tuple[str, int]: ...


def _digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


def _check_blob(what: str, name: str, found: tuple[str, int], digest: str | None,
                size: int | None) -> tuple[str, int]:
    if digest is not None and found[0] != digest:
        raise ImageError(f"{what}: {name} does not match its digest {digest} (it is {found[0]})")
    if size is not None and found[1] != size:
        raise ImageError(f"{what}: {name} is {found[1]} bytes, its descriptor says {size}")
    return found


def clean_name(raw: str, what: str) -> str:
    """An archive member name as a relative path; refuses absolute, `..` and odd names."""
    if raw.startswith("/"):
        raise ImageError(f"{what}: absolute member name {raw!r}")
    if _ODD.search(raw):
        raise ImageError(f"{what}: member name {raw!r} has control characters or backslashes")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"{what}: path traversal in member name {raw!r}")
    return "/".join(parts)


def _is_layer_file(name: str) -> bool:
    return name.endswith(_LAYER_SUFFIXES)


def _is_json_file(name: str) -> bool:
    return name in _JSON_NAMES or ("/" not in name and name.endswith(".json"))


class _TarSource:
    """An archive read in one pass: blobs into the store, small JSON files into memory."""

    def __init__(self, store: ImageStore, stream: IO[bytes], what: str) -> None:
        self.store = store
        self.what = what
        self.files: dict[str, bytes] = {}
        self.blobs: dict[str, tuple[str, int]] = {}
        self.links: dict[str, str | None] = {}  # name -> archive name it links to (None: outside)
        self._read(stream)

    def _read(self, stream: IO[bytes]) -> None:
        try:
            data, _ = open_decompressed(stream)
            with tarfile.open(fileobj=data, mode="r|") as tar:
                for member in tar:
                    self._member(tar, member)
        except tarfile.TarError as e:
            raise ImageError(f"{self.what} is not a readable tar archive: {e}") from e
        except OSError as e:
            if e.errno is not None:
                raise  # the disk, not the archive
            raise ImageError(f"{self.what} is not a readable archive: {e}") from e
        except DECOMPRESSION_ERRORS as e:
            raise ImageError(f"{self.what} is not a readable archive: {e}") from e

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = clean_name(member.name, self.what)
        if member.isdir() or not name:
            return
        if name in self.files or name in self.blobs or name in self.links:
            raise ImageError(f"{self.what}: member {name!r} appears twice")
        if member.issym():
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
            outside = member.linkname.startswith("/") or target.split("/")[0] == ".."
            self.links[name] = None if outside else target
            return
        if member.islnk():
            try:
                self.links[name] = clean_name(member.linkname, self.what)
            except ImageError:
                self.links[name] = None
            return
        if not member.isreg():
            raise ImageError(f"{self.what}: unexpected member {name!r} (not a file, directory or link)")
        if (m := _BLOB.match(name)) is not None:
            digest = "sha256:" + m.group(1)
            try:
                self.store.add_blob_stream(self._open(tar, member), digest, member.size)
            except ImageError as e:
                raise ImageError(f"{self.what}: {name}: {e.message}") from None
            self.blobs[name] = (digest, member.size)
        elif _is_json_file(name):
            if member.size > MAX_JSON:
                raise ImageError(f"{self.what}: {name} is larger than {MAX_JSON} bytes")
            self.files[name] = self._open(tar, member).read()
        elif _is_layer_file(name):
            self.blobs[name] = (self._spool(self._open(tar, member), member.size, name), member.size)
        # anything else (docker's `<id>/json`, `<id>/VERSION`) is not needed

    @staticmethod
    def _open(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
        f = tar.extractfile(member)
        assert f is not None
        return f

    def _spool(self, src: IO[bytes], size: int, name: str) -> str:
        """Hash a member of unknown digest into a temporary file, then ingest it."""
        self.store.tmp.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        written = 0
        with tempfile.TemporaryFile(dir=self.store.tmp, prefix="load-") as tmp:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                tmp.write(chunk)
                written += len(chunk)
            if written != size:
                raise ImageError(f"{self.what}: {name} is truncated")
            digest = "sha256:" + h.hexdigest()
            tmp.seek(0)
            self.store.add_blob_stream(tmp, digest, size)
        return digest

    def _resolve(self, name: str, follow: bool) -> str:
        hops = 0
        while name in self.links:
            target = self.links[name]
            if not follow or target is None:
                raise ImageError(f"{self.what}: {name} is a link, not a blob in the archive")
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise ImageError(f"{self.what}: too many links from {name}")
            name = target
        return name

    def has(self, name: str) -> bool:
        return name in self.files or name in self.blobs

    def read(self, name: str) -> bytes:
        if name in self.files:
            return self.files[name]
        if name in self.blobs:
            return _store_bytes(self.store, self.blobs[name][0], self.what, name)
        raise ImageError(f"{self.what}: {name} is missing from the archive")

    def ingest(self, name: str, digest: str | None = None, size: int | None = None) -> tuple[str, int]:
        target = self._resolve(name, follow=not _BLOB.match(name) and _is_layer_file(name))
        if target in self.blobs:
            return _check_blob(self.what, name, self.blobs[target], digest, size)
        if target in self.files:
            data = self.files[target]
            found = (_digest_of(data), len(data))
            _check_blob(self.what, name, found, digest, size)
            self.store.add_blob_stream(io.BytesIO(data), found[0], found[1])
            return found
        if digest is not None and size is not None and self.store.has_blob(digest) \
                and self.store.blob_path(digest).stat().st_size == size:
            return digest, size  # not in the archive, but verified in the store already
        raise ImageError(f"{self.what}: {name} is missing from the archive")


class _DirSource:
    """An OCI image layout (or unpacked docker save) directory; symlinks are refused."""

    def __init__(self, store: ImageStore, root: Path) -> None:
        self.store = store
        self.root = root
        self.what = str(root)

    @contextlib.contextmanager
    def _open(self, name: str) -> Iterator[IO[bytes]]:
        parts = clean_name(name, self.what).split("/")
        fds: list[int] = []
        try:
            fds.append(os.open(self.root, os.O_RDONLY | os.O_DIRECTORY))
            for part in parts[:-1]:
                fds.append(os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
            fds.append(os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fds[-1]))
            is_file = stat.S_ISREG(os.fstat(fds[-1]).st_mode)
        except OSError as e:
            for fd in fds:
                os.close(fd)
            if isinstance(e, FileNotFoundError):
                raise ImageError(f"{self.what}: {name} is missing") from None
            raise ImageError(f"{self.what}: cannot open {name} (symbolic links are not followed): "
                             f"{e.strerror}") from None
        for fd in fds[:-1]:
            os.close(fd)
        if not is_file:
            os.close(fds[-1])
            raise ImageError(f"{self.what}: {name} is not a regular file")
        with os.fdopen(fds[-1], "rb") as f:
            yield f

    def has(self, name: str) -> bool:
        try:
            with self._open(name):
                return True
        except ImageError:
            return False

    def read(self, name: str) -> bytes:
        with self._open(name) as f:
            if os.fstat(f.fileno()).st_size > MAX_JSON:
                raise ImageError(f"{self.what}: {name} is larger than {MAX_JSON} bytes")
            return f.read(MAX_JSON + 1)

    def ingest(self, name: str, digest: str | None = None, size: int | None = None) -> tuple[str, int]:
        if digest is not None and size is not None and self.store.has_blob(digest) \
                and self.store.blob_path(digest).stat().st_size == size:
            return digest, size
        with self._open(name) as f:
            if digest is None:
                h = hashlib.sha256()
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                digest = "sha256:" + h.hexdigest()
                f.seek(0)
            actual = os.fstat(f.fileno()).st_size
            _check_blob(self.what, name, (digest, actual), None, size)
            try:
                self.store.add_blob_stream(f, digest, actual)
            except ImageError as e:
                raise ImageError(f"{self.what}: {name}: {e.message}") from None
        return digest, actual


def _store_bytes(store: ImageStore, digest: str, what: str, name: str) -> bytes:
    path = store.blob_path(digest)
    if path.stat().st_size > MAX_JSON:
        raise ImageError(f"{what}: {name} is larger than {MAX_JSON} bytes")
    return path.read_bytes()


def _json(src: _Source, name: str) -> Any:
    try:
        return json.loads(src.read(name))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # (deep nesting)
        raise ImageError(f"{src.what}: {name} is not valid JSON: {e}") from None


def _document(store: ImageStore, src: _Source, desc: dict[str, Any], what: str) -> dict[str, Any]:
    """The blob a descriptor names, ingested (so verified), parsed as a JSON object."""
    digest, size = str(desc["digest"]), int(desc["size"])
    src.ingest(_blob_name(digest), digest, size)
    return parse_json_document(_store_bytes(store, digest, src.what, what), what)


def _reference(text: Any, what: str) -> Reference:
    if not isinstance(text, str):
        raise ImageError(f"{what}: an image name is not a string: {text!r}")
    try:
        return parse_reference(text)
    except BoxliteError as e:
        raise ImageError(f"{what}: invalid image name {text!r}: {e.message}") from None


def _by_tag(ref: Reference, what: str, own_digest: str | None = None) -> Reference:
    """An archive's name for an image. A digest in it is accepted only when it is the
    image's own (`own_digest`, an OCI layout's descriptor): any other would let an
    archive pose as another image that a `run NAME@sha256:...` pins."""
    if ref.digest is None or ref.digest == own_digest:
        return ref
    raise ImageError(f"{what}: the image name {str(ref)!r} has a digest that is not its "
                     "image's: an archive names its images by tag",
                     hint="pull an image by digest from its registry instead")


# OCI image layouts ----------------------------------------------------------------------

def _layout_name(annotations: dict[str, Any], what: str) -> Reference | None:
    """The name of an index.json entry: containerd's full name, else ref.name when that is
    a full reference (the OCI spec lets it be just a tag); None when it has neither,
    or a tag only (skopeo's `oci:DIR:TAG`: no repository to keep it under)."""
    ref_name, full_name = annotations.get(REF_NAME), annotations.get(CONTAINERD_NAME)
    if full_name:
        return _reference(full_name, what)
    if not ref_name or _tag_only(ref_name):
        return None
    return _reference(ref_name, what)


def _tag_only(ref_name: object) -> bool:
    return isinstance(ref_name, str) and not any(c in ref_name for c in "/:@")


@contextlib.contextmanager
def _naming(image: str) -> Iterator[None]:
    """An ImageError about one image of an archive names that image."""
    try:
        yield
    except ImageError as e:
        if image in e.message:
            raise
        raise ImageError(f"{e.message} (image {image})", hint=e.hint) from None


def _layout_image(store: ImageStore, src: _Source, desc: dict[str, Any], depth: int = 0) -> str:
    """Ingest the linux/amd64 image a descriptor leads to; its manifest digest."""
    doc = _document(store, src, desc, "manifest")
    if document_kind(doc, desc.get("mediaType")) == "index":
        if depth >= MAX_INDEX_DEPTH:
            raise ImageError(f"{src.what}: indexes nested too deep")
        return _layout_image(store, src, choose_platform(doc), depth + 1)
    check_manifest(doc)
    config = _document(store, src, doc["config"], "config")
    check_config(config)
    for layer in doc["layers"]:
        digest = str(layer["digest"])
        src.ingest(_blob_name(digest), digest, int(layer["size"]))
    return str(desc["digest"])


def _oci_layout(store: ImageStore, src: _Source) -> list[_Planned]:
    layout = _json(src, "oci-layout")
    if not isinstance(layout, dict) or not isinstance(layout.get("imageLayoutVersion"), str):
        raise ImageError(f"{src.what}: oci-layout has no imageLayoutVersion")
    index = parse_json_document(src.read("index.json"), "index.json")
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise ImageError(f"{src.what}: index.json has no list of manifests")
    planned: list[_Planned] = []
    for i, entry in enumerate(entries):
        desc = check_descriptor(entry, f"index.json entry {i + 1}")
        annotations = desc.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ImageError(f"{src.what}: index.json entry {i + 1} has malformed annotations")
        name = _layout_name(annotations, src.what)
        if name is not None:
            name = _by_tag(name, src.what, own_digest=str(desc["digest"]))
        with _naming(name.short if name else str(desc["digest"])):
            manifest_digest = _layout_image(store, src, desc)
        ref_name = annotations.get(REF_NAME)
        planned.append(_Planned([name] if name else [], manifest_digest, str(desc["digest"]),
                                tag_only=str(ref_name) if name is None and _tag_only(ref_name)
                                else ""))
    return planned


# docker save ----------------------------------------------------------------------------

def _diff_id(store: ImageStore, digest: str) -> tuple[str, str]:
    """The compression of a stored layer and the digest of its uncompressed tar."""
    with open(store.blob_path(digest), "rb") as f:
        data, kind = open_decompressed(f)
        if kind == "none":
            return kind, digest
        h = hashlib.sha256()
        try:
            while chunk := data.read(1 << 20):
                h.update(chunk)
        except OSError as e:
            raise ImageError(f"layer {digest} does not decompress: {e}") from None
        except DECOMPRESSION_ERRORS as e:
            raise ImageError(f"layer {digest} does not decompress: {e}") from None
    return kind, "sha256:" + h.hexdigest()


def _docker_image(store: ImageStore, src: _Source, entry: Any, i: int) -> str:
    """Ingest one manifest.json entry; the digest of the manifest made for it."""
    what = f"{src.what}: manifest.json entry {i + 1}"
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
            or not isinstance(entry.get("Layers"), list) \
            or not all(isinstance(x, str) for x in entry["Layers"]):
        raise ImageError(f"{what} is malformed (Config and Layers)")
    config_name = clean_name(entry["Config"], src.what)
    config_digest, config_size = src.ingest(config_name)
    config = parse_json_document(_store_bytes(store, config_digest, src.what, config_name), "config")
    check_config(config)
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    layers_names: list[str] = entry["Layers"]
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers_names):
        raise ImageError(f"{what}: the config lists {len(diff_ids) if isinstance(diff_ids, list) else 'no'} "
                         f"layers (rootfs.diff_ids), the archive {len(layers_names)}")
    layers = []
    for n, (layer_name, expected) in enumerate(zip(layers_names, diff_ids, strict=True)):
        digest, size = src.ingest(clean_name(layer_name, src.what))
        kind, diff_id = _diff_id(store, digest)
        if diff_id != expected:
            raise ImageError(f"{what}: layer {n + 1} ({layer_name}) is not the one the config names "
                             f"(diff_id {expected}, the layer is {diff_id})")
        if kind not in LAYER_TYPES:
            raise ImageError(f"{what}: layer {n + 1} is {kind}-compressed, which images cannot be")
        layers.append({"mediaType": LAYER_TYPES[kind], "digest": digest, "size": size})
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
                "layers": layers}
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    digest = _digest_of(raw)
    store.add_blob_stream(io.BytesIO(raw), digest, len(raw))
    return digest


def _docker_save(store: ImageStore, src: _Source) -> list[_Planned]:
    entries = _json(src, "manifest.json")
    if not isinstance(entries, list):
        box = isinstance(entries, dict) and entries.get("format") == "boxlite-box"
        raise ImageError(f"{src.what}: manifest.json is not a list of images"
                         + (" (it is a box archive of `boxlite export`)" if box else ""),
                         hint="import it with: boxlite import FILE" if box else None)
    planned: list[_Planned] = []
    for i, entry in enumerate(entries):
        tags = entry.get("RepoTags") if isinstance(entry, dict) else None
        if tags is not None and not isinstance(tags, list):
            raise ImageError(f"{src.what}: manifest.json entry {i + 1} has malformed RepoTags")
        names = [_by_tag(_reference(t, src.what), src.what) for t in tags or []]
        with _naming(names[0].short if names else f"{i + 1} of manifest.json"):
            planned.append(_Planned(names, _docker_image(store, src, entry, i)))
    return planned


# loading --------------------------------------------------------------------------------

def _load(store: ImageStore, src: _Source) -> LoadResult:
    # An OCI layout keeps each manifest as it is (its digest with it); docker 25 and
    # `boxlite save` write one beside docker's manifest.json, whose images are made
    # anew here (their manifests are not in it).
    if src.has("index.json") and (src.has("oci-layout") or not src.has("manifest.json")):
        planned = _oci_layout(store, src)
        if not any(plan.names for plan in planned) and src.has("manifest.json"):
            # (an index that names nothing: docker's manifest.json may)
            named = _docker_save(store, src)
            if any(plan.names for plan in named):
                planned = named
    elif src.has("manifest.json"):
        planned = _docker_save(store, src)
    else:
        raise ImageError(f"{src.what} is neither a docker save archive nor an OCI image layout "
                         "(it has no manifest.json or index.json)")
    if not planned:
        raise ImageError(f"{src.what}: no image in it")
    for plan in planned:  # every blob is in: each image's file system, then the names
        store.unpack_before_naming(plan.names[0] if plan.names
                                   else unnamed_reference(plan.manifest_digest),
                                   plan.manifest_digest)
    loaded: list[Reference] = []
    unnamed: list[str] = []
    notes: list[str] = []
    for plan in planned:
        if not plan.names:
            store.keep_unnamed(plan.manifest_digest)
            image_id = str(store.read_json_blob(plan.manifest_digest)["config"]["digest"])
            if image_id not in unnamed:
                unnamed.append(image_id)
            if plan.tag_only:
                notes.append(f"image {plan.tag_only!r} of {src.what} is named by a tag only "
                             f"(no repository): kept without a name; name it with: boxlite "
                             f"tag {image_id[7:19]} REPOSITORY:{plan.tag_only}")
        for ref in plan.names:
            store.tag(ref, plan.manifest_digest)
            if plan.repo_digest:
                store.tag(Reference(ref.registry, ref.repository, None, plan.repo_digest),
                          plan.manifest_digest)
            loaded.append(ref)
    return LoadResult(loaded, unnamed, notes)


def load_archive(store: ImageStore, path: Path) -> LoadResult:
    """Load the images of a `docker save` tarball, an OCI layout directory or an OCI
    layout tar (plain, gzip or zstd) into `store`."""
    with store.writing():
        if path.is_dir():
            return _load(store, _DirSource(store, path))
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise ImageError(f"cannot read {path}: {e.strerror}") from None
        with f:
            mode = os.fstat(f.fileno()).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
                raise ImageError(f"{path} is not a file or directory")
            return _load(store, _TarSource(store, f, str(path)))


def load_stream(store: ImageStore, stream: IO[bytes], what: str = "standard input") -> LoadResult:
    """Load the images of an archive read from `stream` (as `docker load` reads stdin)."""
    with store.writing():
        return _load(store, _TarSource(store, stream, what))
