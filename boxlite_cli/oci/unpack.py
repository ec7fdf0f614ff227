"""Applying OCI layer tar streams to a directory: whiteouts, links, owners, xattrs.

Every member is placed through `resolve_in_root`, so no name, symlinked parent or
hard link can write outside the target directory. The stream may be gzip, zstd (or
xz, bzip2) compressed or a plain tar: its first bytes decide, not its media type.

Without root, owners, device nodes and privileged xattrs cannot be applied to the
tree: given an `Ownership`, the unpack records what each path wanted there instead
(and keeps the tree readable by its own user), for `apply_ownership` to write into
the ext4 image made from the tree.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from boxlite_cli.compression import DECOMPRESSION_ERRORS, open_decompressed
from boxlite_cli.disks.ownership import Device, Ownership, Wanted
from boxlite_cli.errors import ImageError
from boxlite_cli.oci.safepath import clean_member_name, resolve_in_root

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
IS_ROOT = os.geteuid() == 0


XATTR_PREFIX = "SCHILY.xattr."


def _xattrs(member: tarfile.TarInfo) -> tuple[tuple[str, bytes], ...]:
    return tuple((key[len(XATTR_PREFIX):], value.encode("utf-8", "surrogateescape"))
                 for key, value in member.pax_headers.items() if key.startswith(XATTR_PREFIX))


@dataclass
class _Layer:
    """One layer being applied to `root`."""

    root: str
    ownership: Ownership | None
    dir_times: list[tuple[str, tarfile.TarInfo]] = field(default_factory=list)
    unpacked: set[str] = field(default_factory=set)

    def tree_path(self, path: str) -> str:
        """`path` as the image sees it: absolute from the root of the tree."""
        return "/" + path[len(self.root):].lstrip("/")

    def remove(self, path: str) -> None:
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        if self.ownership is not None:
            self.ownership.remove(self.tree_path(path), tree=is_dir)
        if is_dir:
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def clear_dir(self, path: str) -> None:
        """Remove what lower layers put in `path`; entries of the current layer stay."""
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.listdir(path):
                child = os.path.join(path, entry)
                if child not in self.unpacked:
                    self.remove(child)
                elif os.path.isdir(child) and not os.path.islink(child):
                    self.clear_dir(child)

    def record(self, path: str, member: tarfile.TarInfo, device: Device | None = None) -> None:
        assert self.ownership is not None
        mode = 0o777 if member.issym() else member.mode & 0o7777
        self.ownership.set(self.tree_path(path),
                           Wanted(member.uid, member.gid, mode, device, _xattrs(member)))

    def apply_metadata(self, path: str, member: tarfile.TarInfo) -> None:
        if self.ownership is not None:
            # The real owner, mode and xattrs go to the image later; the tree stays
            # readable and writable by the user making the image from it.
            if not member.issym():
                own = 0o700 if member.isdir() else 0o600
                os.chmod(path, (member.mode & 0o777) | own)
        else:
            if IS_ROOT:
                with contextlib.suppress(OSError):
                    os.lchown(path, member.uid, member.gid)
            if not member.issym():
                os.chmod(path, member.mode & 0o7777)
            for key, value in _xattrs(member):
                with contextlib.suppress(OSError):
                    os.setxattr(path, key, value, follow_symlinks=False)
        with contextlib.suppress(OSError):
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str]) -> None:
        root = self.root
        parent = resolve_in_root(root, parts[:-1], follow_last=True)
        os.makedirs(parent, exist_ok=True)
        path = os.path.join(parent, parts[-1])
        p = path
        while p != root and p not in self.unpacked:
            self.unpacked.add(p)
            p = os.path.dirname(p)
        if member.isdir():
            if not os.path.isdir(path) or os.path.islink(path):
                self.remove(path)
                os.mkdir(path, 0o755)
            if self.ownership is not None:
                self.record(path, member)
            self.dir_times.append((path, member))
            return
        self.remove(path)
        device = None
        if member.isreg():
            src = tar.extractfile(member)
            assert src is not None
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            try:
                target = resolve_in_root(root, clean_member_name(member.linkname))
            except ValueError:
                raise ImageError(f"hard link {member.name!r} points outside the image, to "
                                 f"{member.linkname!r}") from None
            if not os.path.lexists(target):
                raise ImageError(f"hard link {member.name!r} points to missing {member.linkname!r}")
            os.link(target, path, follow_symlinks=False)
            if self.ownership is not None:
                self.ownership.link(self.tree_path(path), self.tree_path(target))
            return
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        elif member.ischr() or member.isblk():
            device = Device("c" if member.ischr() else "b", member.devmajor, member.devminor)
            if self.ownership is not None:
                # A placeholder the image's device node replaces (see apply_ownership).
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            elif IS_ROOT:
                os.mknod(path, device.type_bits | 0o600, os.makedev(device.major, device.minor))
            else:
                return  # device nodes need root; the guest provides /dev anyway
        else:
            return
        if self.ownership is not None:
            self.record(path, member, device)
        self.apply_metadata(path, member)


class _HashingReader:
    """Reads through to `raw`, hashing what passes (the layer's diff_id)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hash.update(data)
        return data

    def drain(self) -> str:
        """Read to the end (tar readers stop at the end-of-archive blocks); the digest."""
        while self.read(1 << 20):
            pass
        return "sha256:" + self.hash.hexdigest()


class _Prepended:
    """`head`, then the rest of `rest` (a stream we peeked into)."""

    def __init__(self, head: bytes, rest: _HashingReader) -> None:
        self.head = head
        self.rest = rest

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(size)
        if size < 0:
            data, self.head = self.head + self.rest.read(), b""
            return data
        data, self.head = self.head[:size], self.head[size:]
        return data


def _shown(path: object, root: str, limit: int = 120) -> str:
    """A path of the tree as the image names it, shortened for one line."""
    text = str(path)
    if text.startswith(root):
        text = "/" + text[len(root):].lstrip("/")
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 2:]}"


def _apply_members(tar: tarfile.TarFile, layer: _Layer) -> int:
    """Apply every member; the bytes of the layer's files (docker's layer size)."""
    rootstr = layer.root
    size = 0
    for member in tar:
        if member.isreg():
            size += member.size
        parts = clean_member_name(member.name)
        if not parts:
            continue
        base = parts[-1]
        if base == OPAQUE:
            layer.clear_dir(resolve_in_root(rootstr, parts[:-1], follow_last=True))
            continue
        if base.startswith(WHITEOUT_PREFIX):
            name = base[len(WHITEOUT_PREFIX):]
            if name in ("", ".", ".."):
                raise ImageError(f"bad layer archive: invalid whiteout {member.name!r}")
            parent = resolve_in_root(rootstr, parts[:-1], follow_last=True)
            layer.remove(os.path.join(parent, name))
            continue
        layer.extract(tar, member, parts)
    return size


def apply_layer(stream: IO[bytes], root: Path, ownership: Ownership | None = None,
                diff_id: str | None = None) -> int:
    """Apply one layer tar stream (gzip, zstd or uncompressed) on top of `root`; the
    bytes of its files (what docker's `history` and `images` count).

    With `ownership`, owners, modes, device nodes and xattrs are recorded there
    instead of applied to the tree (what an unprivileged unpack must do). With
    `diff_id`, the uncompressed tar must hash to it (the image config's rootfs.diff_ids).
    """
    layer = _Layer(str(root), ownership)
    rootstr = layer.root
    size = 0
    try:
        decompressed, _ = open_decompressed(stream)
        data = _HashingReader(decompressed)
        head = data.read(tarfile.BLOCKSIZE)
        if head:  # (an empty blob is an empty layer, as docker and containerd take it)
            with tarfile.open(fileobj=_Prepended(head, data),  # type: ignore[call-overload]
                              mode="r|") as tar:
                size = _apply_members(tar, layer)
        actual = data.drain()
        if diff_id is not None and actual != diff_id:
            raise ImageError(f"layer content does not match the image config: diff_id "
                             f"{diff_id} expected, the layer is {actual}")
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the disk is full, the layer is fine
        if e.filename is not None:  # (not the host path of our unpack directory)
            raise ImageError(f"bad layer archive: {e.strerror}: "
                             f"{_shown(e.filename, rootstr)}") from e
        raise ImageError(f"bad layer archive: {e}") from e
    except (tarfile.TarError, ValueError) as e:
        raise ImageError(f"bad layer archive: {e}") from e
    except DECOMPRESSION_ERRORS as e:
        raise ImageError(f"bad layer archive: {e}") from e
    for path, member in reversed(layer.dir_times):
        layer.apply_metadata(path, member)
    return size


def make_volume_dirs(root: Path, volumes: object, ownership: Ownership | None = None) -> list[str]:
    """Make the directories an image's config names as volumes (VOLUME) that its layers
    lack, as the volume mounts of docker's containers make them (root's, 0755): never
    outside `root` (symlinks resolve inside it), and never over a file. The image paths
    made."""
    made: list[str] = []
    for path in sorted(volumes) if isinstance(volumes, dict) else []:
        try:
            parts = clean_member_name(str(path))
        except ValueError:
            continue  # (a `..` in it: not a place in the image)
        try:
            for i in range(1, len(parts) + 1):
                host = resolve_in_root(str(root), parts[:i], follow_last=True)
                if os.path.lexists(host):
                    if not os.path.isdir(host):
                        break  # a file there: the box sees that, as it would without this
                    continue
                # (a link to a place that is not there yet, as `/var/lib/db -> /data/db`:
                # the place is made, with its missing parents, as docker's mount makes it)
                if not _make_missing(root, Path(host), ownership, made):
                    break
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                continue  # a file in the way, or a link loop: the box sees that
            raise ImageError(f"cannot make its VOLUME {path}: {e.strerror or e}") from e
    return made


def _make_missing(root: Path, host: Path, ownership: Ownership | None, made: list[str]) -> bool:
    """Make `host` (resolved inside `root`: what exists of it is real directories) and
    its missing parents, root's and 0755. False when a file is in the way."""
    here = root
    for name in host.relative_to(root).parts:
        here = here / name
        if os.path.lexists(here):
            if os.path.islink(here) or not os.path.isdir(here):
                return False
            continue
        os.mkdir(here)
        os.chmod(here, 0o755)  # (whatever the umask)
        shown = "/" + str(here.relative_to(root))
        if ownership is not None:
            ownership.set(shown, Wanted(0, 0, 0o755))
        made.append(shown)
    return True
