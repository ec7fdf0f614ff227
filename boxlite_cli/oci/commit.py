"""`boxlite commit`: a box's changes to its image, as one new layer on the image's own.

The box's root file system (its disk alone, nothing mounted on it) comes as a tar from
its agent. Each entry is compared with what the image's layers make at that path, by
its metadata, as docker's naive diff does (kind, mode, owner; and for what is not a
directory, size, mtime, link target, device numbers and setcap's security.capability,
which goes with the file as in docker's layers): an entry that differs, or is
new, goes into the layer, with the directories above it; a path of the image that the
box no longer has becomes a whiteout (`.wh.NAME`). A new hard link to a file the layer
does not carry is written as the file itself (fetched again). The files docker keeps
out of a commit are kept out: /etc/hostname, /etc/hosts and /etc/resolv.conf.
"""

from __future__ import annotations

import copy
import datetime
import io
import posixpath
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from boxlite_cli.errors import ImageError
from boxlite_cli.oci.compression import open_decompressed
from boxlite_cli.oci.store import Image, ImageStore
from boxlite_cli.transfer.extract import ChunkReader

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# docker's: the box's own, bound over the image's files (never in a commit)
LEFT_OUT = frozenset({"etc/hostname", "etc/hosts", "etc/resolv.conf"})
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
CAPABILITY = "SCHILY.xattr.security.capability"  # (setcap's; the xattr docker's diff sees)
_KINDS = {tarfile.DIRTYPE: "dir", tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file",
          tarfile.LNKTYPE: "file", tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "chr",
          tarfile.BLKTYPE: "blk", tarfile.FIFOTYPE: "fifo", tarfile.CONTTYPE: "file",
          tarfile.GNUTYPE_SPARSE: "file"}

Refetch = Callable[[str], Iterator[bytes]]  # a tar of one path of the box, named "file"


@dataclass(frozen=True)
class Meta:
    """What a path is, as far as a diff tells files apart."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int = 0
    mtime: int = 0
    link: str = ""
    dev: tuple[int, int] = (0, 0)
    capability: bytes = b""  # its security.capability xattr (setcap's), as docker's diff

    def same(self, other: Meta) -> bool:
        if self.kind == "dir" == other.kind:  # (a directory's size and time say nothing)
            return (self.mode, self.uid, self.gid) == (other.mode, other.uid, other.gid)
        return self == other


def _reader(chunks: Iterator[bytes]) -> IO[bytes]:
    return io.BufferedReader(ChunkReader(chunks), 1 << 20)


def norm(name: str) -> str:
    """A member name as a path relative to the root, no `./`, no trailing `/`."""
    path = posixpath.normpath("/" + name).lstrip("/")
    return "" if path == "." else path


def _meta(m: tarfile.TarInfo, size: int | None = None, capability: bytes | None = None) -> Meta:
    kind = _KINDS.get(m.type, "other")
    if capability is None:
        capability = m.pax_headers.get(CAPABILITY, "").encode("utf-8", "surrogateescape")
    return Meta(kind, m.mode & 0o7777, m.uid, m.gid,
                size=(m.size if size is None else size) if kind == "file" else 0,
                mtime=int(m.mtime), link=m.linkname if kind == "symlink" else "",
                dev=(m.devmajor, m.devminor) if kind in ("chr", "blk") else (0, 0),
                capability=capability if kind == "file" else b"")


def _drop_under(index: dict[str, Meta], path: str, keep_self: bool = False) -> None:
    prefix = path + "/" if path else ""
    for key in [k for k in index if k.startswith(prefix) or (k == path and not keep_self)]:
        del index[key]


def apply_to_index(index: dict[str, Meta], tar: tarfile.TarFile) -> None:
    """One layer's members over `index` (its whiteouts take paths away)."""
    for m in tar:
        path = norm(m.name)
        if not path:
            continue
        parent, base = posixpath.split(path)
        if base == OPAQUE:
            _drop_under(index, parent, keep_self=True)
        elif base.startswith(WHITEOUT):
            _drop_under(index, posixpath.join(parent, base[len(WHITEOUT):]))
        else:
            if m.type == tarfile.LNKTYPE:
                target = index.get(norm(m.linkname))
                meta = (_meta(m, target.size, target.capability) if target is not None
                        else _meta(m, 0))
            else:
                meta = _meta(m)
            old = index.get(path)
            if old is not None and old.kind == "dir" and meta.kind != "dir":
                _drop_under(index, path)
            index[path] = meta


def image_index(store: ImageStore, image: Image) -> dict[str, Meta]:
    """What the image's layers make, path by path."""
    index: dict[str, Meta] = {}
    for digest in image.layers:
        try:
            with open(store.blob_path(digest), "rb") as f:
                data, _ = open_decompressed(f)
                with tarfile.open(fileobj=data, mode="r|") as tar:
                    apply_to_index(index, tar)
        except FileNotFoundError:
            raise ImageError(f"layer {digest} of the box's image is not in the store any more",
                             hint="pull or load the box's image again") from None
        except (tarfile.TarError, OSError) as e:
            raise ImageError(f"layer {digest} of the box's image cannot be read: {e}") from None
    return index


@dataclass(frozen=True, order=True)
class Change:
    """A path of the box that differs from its image: docker diff's line."""

    path: str  # absolute, as docker prints it
    kind: str  # "A" added, "C" changed, "D" deleted


class _Diff:
    """The box's entries against the image's index, in the box's walk order (a
    directory before what is in it): each change listed, and, for a commit, written
    to the layer `out` (with the unchanged directories above it)."""

    def __init__(self, base: dict[str, Meta], out: tarfile.TarFile | None = None,
                 refetch: Refetch | None = None) -> None:
        self.base = base
        self.out = out
        self.refetch = refetch
        self.changes: list[Change] = []
        self.seen: set[str] = set()
        self.not_dirs: set[str] = set()  # what the box has that is not a directory
        self.written: set[str] = set()
        # unchanged directories, written if something below them is
        self.held: dict[str, tarfile.TarInfo | None] = {}
        # the size and capability of the box's regular files (what its hard links have)
        self.files: dict[str, tuple[int, bytes]] = {}

    def parents(self, path: str) -> None:
        """The directories above `path` that the layer lacks, as the box has them."""
        missing = []
        parent = posixpath.dirname(path)
        while parent and parent not in self.written:
            missing.append(parent)
            parent = posixpath.dirname(parent)
        for directory in reversed(missing):
            if directory in self.held:
                self.add(directory, self.held.pop(directory))

    def add(self, path: str, m: tarfile.TarInfo | None, data: IO[bytes] | None = None) -> None:
        if self.out is not None and m is not None:
            self.out.addfile(m, data)
        self.written.add(path)
        self.changes.append(Change("/" + path, "C" if path in self.base else "A"))

    def changed(self, path: str, meta: Meta, m: tarfile.TarInfo | None) -> bool:
        """Whether the box's `path` differs from the image's (the directories above it
        then added); an unchanged directory is held."""
        self.seen.add(path)
        if meta.kind != "dir":
            self.not_dirs.add(path)
        old = self.base.get(path)
        if old is not None and old.same(meta):
            if meta.kind == "dir":
                self.held[path] = m
            return False
        self.parents(path)
        return True

    def entry(self, path: str, meta: Meta) -> None:
        """One entry of the box's tree (metadata alone): listed if it changed."""
        path = norm(path)
        if path and path not in LEFT_OUT and self.changed(path, meta, None):
            self.add(path, None)
        self.seen.add(path)

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        """One member of the box's tar: into the layer if it changed."""
        path = norm(m.name)
        if not path or path in LEFT_OUT:
            self.seen.add(path)
            return
        m.name = path
        m.pax_headers = {k: v for k, v in m.pax_headers.items() if k not in ("path", "linkpath")}
        if m.type == tarfile.LNKTYPE:
            m.linkname = norm(m.linkname)
            meta = _meta(m, *self.files.get(m.linkname, (0, b"")))
        else:
            meta = _meta(m)
            if meta.kind == "file":
                self.files[path] = (m.size, meta.capability)
        if not self.changed(path, meta, m):
            return
        if m.type == tarfile.LNKTYPE and m.linkname not in self.written:
            self.fetched(m)
        elif m.isfile():
            self.add(path, m, tar.extractfile(m))
        else:
            self.add(path, m)

    def fetched(self, link: tarfile.TarInfo) -> None:
        """A hard link to a file this layer does not carry: the file itself, again."""
        assert self.refetch is not None
        with tarfile.open(fileobj=_reader(self.refetch(link.name)), mode="r|") as tar:
            for m in tar:
                if m.isfile():
                    m.name = link.name
                    m.pax_headers = {k: v for k, v in m.pax_headers.items() if k != "path"}
                    self.add(link.name, m, tar.extractfile(m))
                    return
        raise ImageError(f"{link.name} went away while the box was committed")

    def whiteouts(self) -> None:
        """The image's paths the box does not have: a whiteout each (not under one)."""
        gone: set[str] = set()
        for path in sorted(self.base):
            if path in self.seen:
                continue
            parent = posixpath.dirname(path)
            gone.add(path)
            # (what was under a directory the box removed, or made something else, goes
            # with it)
            if parent and (parent in gone or parent not in self.seen or parent in self.not_dirs):
                continue
            self.parents(path)
            if self.out is not None:
                info = tarfile.TarInfo(posixpath.join(parent,
                                                      WHITEOUT + posixpath.basename(path)))
                info.mode = 0o644
                self.out.addfile(info)
            self.changes.append(Change("/" + path, "D"))


def diff_layer(box_root: Iterator[bytes], base: dict[str, Meta], out: IO[bytes],
               refetch: Refetch) -> int:
    """Write the layer of the box's changes (a plain tar) to `out`; how many entries
    it has (0: the box changed nothing)."""
    with tarfile.open(fileobj=_reader(box_root), mode="r|") as tar, \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as layer:
        diff = _Diff(base, layer, refetch)
        for m in tar:
            diff.member(tar, m)
        diff.whiteouts()
        return len(diff.changes)


def box_changes(box_tree: Iterable[tuple[str, Meta]], base: dict[str, Meta]) -> list[Change]:
    """What the box added, changed and deleted on its root file system (its entries,
    a directory before what is in it), by path, as docker diff lists them."""
    diff = _Diff(base)
    for path, meta in box_tree:
        diff.entry(path, meta)
    diff.whiteouts()
    return sorted(diff.changes)


def committed_config(base: dict[str, Any], container: dict[str, Any], diff_id: str | None,
                     author: str, message: str, created: datetime.datetime) -> dict[str, Any]:
    """The new image's config: the base image's, with the box's container config, its
    layer's diff id and a history entry (docker's fields)."""
    config = copy.deepcopy(base)
    stamp = created.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    config["created"] = stamp
    for key, value in (("author", author), ("comment", message)):  # (docker's fields)
        if value:
            config[key] = value
        else:
            config.pop(key, None)
    config["config"] = container
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    if diff_id is not None:
        rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), diff_id]
    if isinstance(config.get("history"), list):
        entry: dict[str, Any] = {"created": stamp, "created_by": "boxlite commit"}
        if author:
            entry["author"] = author
        if message:
            entry["comment"] = message
        if diff_id is None:
            entry["empty_layer"] = True
        config["history"] = [*config["history"], entry]
    return config
