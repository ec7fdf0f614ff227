"""Applying OCI layer tar streams to a directory: whiteouts, links, owners, xattrs.

Every member is placed through `resolve_in_root`, so no name, symlinked parent or
hard link can write outside the target directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO

from boxlite_cli.errors import ImageError
from boxlite_cli.oci.safepath import clean_member_name, resolve_in_root

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
IS_ROOT = os.geteuid() == 0


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _clear_dir(path: str, keep: set[str]) -> None:
    """Remove what lower layers put in `path`; entries of the current layer stay."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.listdir(path):
            child = os.path.join(path, entry)
            if child not in keep:
                _remove(child)
            elif os.path.isdir(child) and not os.path.islink(child):
                _clear_dir(child, keep)


def _apply_metadata(path: str, member: tarfile.TarInfo) -> None:
    if IS_ROOT:
        with contextlib.suppress(OSError):
            os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            with contextlib.suppress(OSError):
                os.setxattr(path, key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"),
                            follow_symlinks=False)
    with contextlib.suppress(OSError):
        os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: str, parts: list[str],
                    dir_times: list[tuple[str, tarfile.TarInfo]], unpacked: set[str]) -> None:
    parent = resolve_in_root(root, parts[:-1], follow_last=True)
    os.makedirs(parent, exist_ok=True)
    path = os.path.join(parent, parts[-1])
    p = path
    while p != root and p not in unpacked:
        unpacked.add(p)
        p = os.path.dirname(p)
    if member.isdir():
        if not os.path.isdir(path) or os.path.islink(path):
            _remove(path)
            os.mkdir(path, 0o755)
        dir_times.append((path, member))
        return
    _remove(path)
    if member.isreg():
        src = tar.extractfile(member)
        assert src is not None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        target = resolve_in_root(root, clean_member_name(member.linkname))
        if not os.path.lexists(target):
            raise ImageError(f"hard link {member.name!r} points to missing {member.linkname!r}")
        os.link(target, path, follow_symlinks=False)
        return
    elif member.ischr() or member.isblk() or member.isfifo():
        if member.isfifo():
            os.mkfifo(path, 0o600)
        elif IS_ROOT:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        else:
            return  # device nodes need root; the guest provides /dev anyway
    else:
        return
    _apply_metadata(path, member)


def apply_layer(stream: IO[bytes], root: Path) -> None:
    """Apply one (optionally gzip-compressed) layer tar stream on top of `root`."""
    dir_times: list[tuple[str, tarfile.TarInfo]] = []
    unpacked: set[str] = set()
    rootstr = str(root)
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                parts = clean_member_name(member.name)
                if not parts:
                    continue
                base = parts[-1]
                if base == OPAQUE:
                    _clear_dir(resolve_in_root(rootstr, parts[:-1], follow_last=True), unpacked)
                    continue
                if base.startswith(WHITEOUT_PREFIX):
                    name = base[len(WHITEOUT_PREFIX):]
                    if name in ("", ".", ".."):
                        raise ImageError(f"bad layer archive: invalid whiteout {member.name!r}")
                    parent = resolve_in_root(rootstr, parts[:-1], follow_last=True)
                    _remove(os.path.join(parent, name))
                    continue
                _extract_member(tar, member, rootstr, parts, dir_times, unpacked)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the disk is full, the layer is fine
        raise ImageError(f"bad layer archive: {e}") from e
    except (tarfile.TarError, ValueError, EOFError) as e:
        raise ImageError(f"bad layer archive: {e}") from e
    for path, member in reversed(dir_times):
        _apply_metadata(path, member)
