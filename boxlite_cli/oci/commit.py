"""`boxlite commit` and `diff`: a box's changes to its image, listed, and as one new
layer on the image's own.

The box's root file system (its disk alone, nothing mounted on it) comes from its
agent as metadata, entry by entry (no file data). Each entry is compared with what the
image's layers make at that path, as docker's naive diff does (kind, mode, owner; and
for what is not a directory, size, mtime, link target, device numbers and setcap's
security.capability, which goes with the file as in docker's layers): an entry that
differs, or is new, is a change, with the directories above it; a path of the image
that the box no longer has is deleted (a whiteout, `.wh.NAME`, in the layer). The
layer has what the box has at each changed path, fetched from the agent as one tar
of those paths alone (a new hard link to a file the layer does not carry comes as the
file itself). The files docker keeps out of a commit are kept out: /etc/hostname,
/etc/hosts and /etc/resolv.conf.
"""

from __future__ import annotations

import copy
import datetime
import io
import os
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from boxlite_cli.compression import open_decompressed
from boxlite_cli.errors import ImageError
from boxlite_cli.oci.store import Image, ImageStore
from boxlite_cli.transfer.extract import ChunkReader

WHITEOUT = ".wh."
PATH_MAX = 4096  # (Linux's, with the NUL: what an unpacker's path may be)
OPAQUE = ".wh..wh..opq"
# docker's: the box's own, bound over the image's files (never in a commit)
LEFT_OUT = frozenset({"etc/hostname", "etc/hosts", "etc/resolv.conf"})
# The directories boxlite makes in every box where its image has none (the guest's
# mount points, /etc for the three above): as docker's init layer, not the box's change
MOUNT_POINTS = ("dev", "proc", "sys", "etc")
# The file a `cp` into the box writes beside its name before it renames it there (the
# agent's copyfiles.PARTIAL_PREFIX, and 16 hex digits)
COPY_PARTIAL = re.compile(r"\.boxlite-cp-[0-9a-f]{16}")
CAPABILITY = "SCHILY.xattr.security.capability"  # (setcap's; the xattr docker's diff sees)
_KINDS = {tarfile.DIRTYPE: "dir", tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file",
          tarfile.LNKTYPE: "file", tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "chr",
          tarfile.BLKTYPE: "blk", tarfile.FIFOTYPE: "fifo", tarfile.CONTTYPE: "file",
          tarfile.GNUTYPE_SPARSE: "file"}

# The tar of these paths of the box, each by itself (the agent's CopyPaths)
Fetch = Callable[[list[str]], Iterator[bytes]]
FETCH_BATCH = 4000  # paths a request (well under gRPC's 4 MiB a message)


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


def member_meta(m: tarfile.TarInfo, size: int | None = None,
                capability: bytes | None = None) -> Meta:
    """What a layer's member is (a hard link: with its file's `size` and `capability`)."""
    kind = _KINDS.get(m.type, "other")
    if capability is None:
        capability = m.pax_headers.get(CAPABILITY, "").encode("utf-8", "surrogateescape")
    return Meta(kind, m.mode & 0o7777, m.uid, m.gid,
                size=(m.size if size is None else size) if kind == "file" else 0,
                mtime=int(m.mtime), link=m.linkname if kind == "symlink" else "",
                dev=(m.devmajor, m.devminor) if kind in ("chr", "blk") else (0, 0),
                capability=capability if kind == "file" else b"")


IMPLICIT_DIR = Meta("dir", 0o755, 0, 0)  # (oci/unpack.py's, for a layer that has none)


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
                meta = (member_meta(m, target.size, target.capability) if target is not None
                        else member_meta(m, 0))
            else:
                meta = member_meta(m)
            old = index.get(path)
            if old is not None and old.kind == "dir" and meta.kind != "dir":
                _drop_under(index, path)
            index[path] = meta
            parent = posixpath.dirname(path)
            while parent and parent not in index:  # (a layer may leave its directories
                index[parent] = IMPLICIT_DIR       # out: the unpacker makes them so)
                parent = posixpath.dirname(parent)


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


def boxlite_made(image_config: dict[str, Any]) -> frozenset[str]:
    """The directories a box has though its image's layers do not make them: the mount
    points, and the image's VOLUMEs (made when it was unpacked) with their parents."""
    made = set(MOUNT_POINTS)
    volumes = image_config.get("Volumes")
    for target in volumes if isinstance(volumes, dict) else ():
        path = norm(str(target))
        while path:
            made.add(path)
            path = posixpath.dirname(path)
    return frozenset(made)


BoxEntry = tuple[str, Meta, int]  # an entry of the box's tree: path, metadata, ctime (ns)


@dataclass(frozen=True, order=True)
class Change:
    """A path of the box that differs from its image: docker diff's line."""

    path: str  # absolute, as docker prints it
    kind: str  # "A" added, "C" changed, "D" deleted


class _Diff:
    """The box's entries against the image's index, in the box's walk order (a
    directory before what is in it): each change, with the unchanged directories above
    it as changed (docker's diff lists them; the layer needs them)."""

    def __init__(self, base: dict[str, Meta], changed_after_ns: int | None = None,
                 made: frozenset[str] = frozenset()) -> None:
        self.base = base
        self.changed_after_ns = changed_after_ns
        self.made = made  # (boxlite_made's: directories that are no change of the box)
        self.changes: list[Change] = []
        self.seen: set[str] = set()
        self.not_dirs: set[str] = set()  # what the box has that is not a directory
        self.listed: set[str] = set()
        self.held: set[str] = set()  # unchanged directories, listed if something below is

    def parents(self, path: str) -> None:
        """The directories above `path` not listed yet, listed."""
        missing = []
        parent = posixpath.dirname(path)
        while parent and parent not in self.listed:
            missing.append(parent)
            parent = posixpath.dirname(parent)
        for directory in reversed(missing):
            if directory in self.held:
                self.held.discard(directory)
                self.add(directory)

    def add(self, path: str) -> None:
        self.listed.add(path)
        self.changes.append(Change("/" + path, "C" if path in self.base else "A"))

    def entry(self, path: str, meta: Meta, ctime_ns: int = 0) -> None:
        """One entry of the box's tree: listed if it differs from the image's, or (not
        a directory) its inode changed after `changed_after_ns`."""
        path = norm(path)
        self.seen.add(path)
        if not path or path in LEFT_OUT:
            return
        touched = False
        if meta.kind != "dir":
            self.not_dirs.add(path)
            touched = self.changed_after_ns is not None and ctime_ns > self.changed_after_ns
        old = self.base.get(path)
        if old is None and meta.kind == "file" and COPY_PARTIAL.fullmatch(
                posixpath.basename(path)):
            return  # (a `cp` into the box under way, or cut off: not the box's file yet)
        if (old is not None and old.same(meta) and not touched) or (
                old is None and meta.kind == "dir" and path in self.made):
            if meta.kind == "dir":
                self.held.add(path)
            return
        self.parents(path)
        self.add(path)

    def whiteouts(self) -> None:
        """The image's paths the box does not have: each listed as deleted (not what
        was under one)."""
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
            self.changes.append(Change("/" + path, "D"))


def walk_changes(box_tree: Iterable[BoxEntry], base: dict[str, Meta],
                 changed_after_ns: int | None = None,
                 made: frozenset[str] = frozenset()) -> list[Change]:
    """What the box added, changed and deleted on its root file system (its entries,
    a directory before what is in it), against the image's index `base`: in the
    order a layer has them (a directory before what is in it, the deleted last). An
    entry whose inode changed after `changed_after_ns` (when the box's disk was made
    from the image) is changed even with the image's metadata: a write that kept the
    size and time (`touch -r`, a `cp -p`), as overlayfs copies such a file up. The
    directories in `made` (boxlite_made's) are no change while nothing in them is."""
    diff = _Diff(base, changed_after_ns, made)
    for path, meta, ctime_ns in box_tree:
        diff.entry(path, meta, ctime_ns)
    diff.whiteouts()
    return diff.changes


def box_changes(box_tree: Iterable[BoxEntry], base: dict[str, Meta],
                changed_after_ns: int | None = None,
                made: frozenset[str] = frozenset()) -> list[Change]:
    """walk_changes by path, as docker diff lists them."""
    return sorted(walk_changes(box_tree, base, changed_after_ns, made))


def check_committable(path: str) -> None:
    """ImageError for a path of the box that a layer cannot carry as what it is."""
    if any(part.startswith(WHITEOUT) for part in path.split("/")):
        raise ImageError(f"cannot commit /{path}: in an image layer a name starting with "
                         f"{WHITEOUT} is a deletion, not a file",
                         hint="rename or remove it in the box, then commit")
    if len(os.fsencode(path)) + 1 > PATH_MAX:
        raise ImageError(f"cannot commit /{path[:40]}...: its path is longer than "
                         f"{PATH_MAX - 1} bytes, which image unpackers refuse",
                         hint="move it higher in the box, then commit")


def write_layer(changes: list[Change], fetch: Fetch, out: IO[bytes]) -> None:
    """The layer of `changes` (walk_changes') as a plain tar to `out`: what the box has
    at each path it added or changed (`fetch`ed in batches), and a whiteout
    (`.wh.NAME`) for each it deleted."""
    present = [c.path[1:] for c in changes if c.kind != "D"]
    for path in present:
        check_committable(path)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as layer:
        for i in range(0, len(present), FETCH_BATCH):
            with tarfile.open(fileobj=_reader(fetch(present[i:i + FETCH_BATCH])),
                              mode="r|") as tar:
                for m in tar:
                    m.name = norm(m.name)
                    m.pax_headers = {k: v for k, v in m.pax_headers.items()
                                     if k not in ("path", "linkpath")}
                    if m.type == tarfile.LNKTYPE:
                        m.linkname = norm(m.linkname)
                    layer.addfile(m, tar.extractfile(m) if m.isfile() else None)
        for change in changes:
            if change.kind == "D":
                parent, name = posixpath.split(change.path[1:])
                info = tarfile.TarInfo(posixpath.join(parent, WHITEOUT + name))
                info.mode = 0o644
                layer.addfile(info)


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
