"""Extracting a tar stream that came out of a box: untrusted input, confined to one dir.

What `boxlite cp BOX:SRC DST` writes lands below the extraction directory and nowhere
else:

- entry names with `..` are refused; absolute names are taken relative to it;
- every parent directory is opened component by component with O_NOFOLLOW from a
  descriptor of the extraction directory: an entry below a symlink (one the stream
  made, or one that was there) is refused, never written through;
- symlinks are created as they are (their targets are text; nothing follows them);
- hard links may only point at files this extraction created;
- device nodes are skipped with a warning; sockets cannot be in a tar;
- an existing file is replaced, never written through: a file is written under a
  temporary name (created with O_EXCL) and renamed over it, so a copy cut short leaves
  the old file as it was; a directory is never replaced by a non-directory or back
  (docker's rule);
- set-uid/set-gid bits and file capabilities (setcap's) are dropped, unless `-a`
  keeps an owner that is the invoking user's own: without `-a` the file becomes ours
  (a box could plant a set-uid file of the user's, of root's when root copies), with
  another owner it would run as that one.

The stream is read sequentially in 1 MiB pieces.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import re
import secrets
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, cast

from boxlite_cli.errors import BoxliteError
from boxlite_cli.fdio import write_sparse

CHUNK = 1 << 20
TAR_BUFSIZE = 64 << 10  # (tarfile's stream copies what its buffer holds past each read: a
# 1 MiB buffer made every 512-byte header cost a 1 MiB copy)
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
Warn = Callable[[str], None]
CAPABILITY = "SCHILY.xattr.security.capability"  # (a pax header of GNU tar's and docker's)


PARTIAL_PREFIX = ".boxlite-cp-"  # a file being copied: written under this name, renamed
_PARTIAL = re.compile(re.escape(PARTIAL_PREFIX) + "[0-9a-f]{16}")
PARTIAL_STALE_S = 60.0  # younger: perhaps not yet locked by the copy that made it


def sweep_partials(dir_fd: int, swept: set[tuple[int, int]]) -> None:
    """Remove from the directory what copies killed with SIGKILL left there (their
    partial files, which no copy holds locked any more); once a directory."""
    st = os.fstat(dir_fd)
    if (st.st_dev, st.st_ino) in swept:
        return
    swept.add((st.st_dev, st.st_ino))
    with contextlib.suppress(OSError):
        listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:  # (dir_fd may be an O_PATH descriptor, which cannot be listed)
            names = [n for n in os.listdir(listing) if _PARTIAL.fullmatch(n)]
        finally:
            os.close(listing)
        for name in names:
            with contextlib.suppress(OSError):
                _remove_if_stale(dir_fd, name)


def _remove_if_stale(dir_fd: int, name: str) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or time.time() - st.st_ctime < PARTIAL_STALE_S:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # (a copy writes it now)
        here = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (here.st_dev, here.st_ino) == (st.st_dev, st.st_ino):
            os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(fd)


class UnsafeArchive(BoxliteError):
    """The tar stream from the box tried to leave the destination, or is malformed."""


def _no_warn(_: str) -> None:
    pass


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buf = memoryview(nxt)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def member_parts(name: str) -> list[str]:
    """Components of an untrusted member name, relative; `..` is refused."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"refusing archive entry {name!r}: it climbs out with '..'")
    return parts


@dataclass
class ExtractResult:
    entries: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass
class _Extract:
    root_fd: int
    keep_owner: bool
    warn: Warn
    top: str = ""  # the one entry asked for (its name): every member is it or below it
    result: ExtractResult = field(default_factory=ExtractResult)
    created: set[str] = field(default_factory=set)
    dirs: list[tuple[list[str], tarfile.TarInfo]] = field(default_factory=list)
    swept: set[tuple[int, int]] = field(default_factory=set)  # directories swept once

    def open_dir(self, parts: list[str], create: bool) -> int:
        """A descriptor of directory `parts` below the root, never through a symlink."""
        fd = os.dup(self.root_fd)
        try:
            for i, part in enumerate(parts):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    nfd = os.open(part, _DIR, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        where = "/".join(parts[:i + 1])
                        raise UnsafeArchive(f"refusing to write below {where!r}: "
                                            "it is not a directory (a symlink?)") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = member_parts(m.name)
        if self.top and (not parts or parts[0] != self.top):
            # (the box makes the stream: asked for `report.txt`, it may not also write
            # `.bashrc` beside it in the destination)
            raise UnsafeArchive(f"refusing archive entry {m.name!r}: the copy asked for "
                                f"{self.top!r} only")
        if not parts:
            return  # "." : the extraction directory itself keeps its metadata
        if m.ischr() or m.isblk():
            self.result.skipped.append(m.name)
            self.warn(f"skipping device node {m.name!r} from the box")
            return
        if not (m.isdir() or m.isreg() or m.issym() or m.islnk() or m.isfifo()):
            self.result.skipped.append(m.name)
            return
        pfd = self.open_dir(parts[:-1], create=True)
        try:
            self.place(tar, m, pfd, parts)
        finally:
            os.close(pfd)
        self.result.entries += 1

    def place(self, tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, parts: list[str]) -> None:
        name, shown = parts[-1], "/".join(parts)
        try:
            old: os.stat_result | None = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None:
            if stat.S_ISDIR(old.st_mode) != m.isdir():
                what = ("directory {} with a non-directory" if stat.S_ISDIR(old.st_mode)
                        else "non-directory {} with a directory")
                raise UnsafeArchive("cannot overwrite " + what.format(repr(shown)))
            if not m.isdir() and not m.isreg():  # (a file replaces it by a rename)
                os.unlink(name, dir_fd=pfd)
        if m.isdir():
            if old is None:
                os.mkdir(name, 0o700, dir_fd=pfd)
            self.dirs.append((parts, m))
            return
        if m.isreg():
            self.write_file(tar, m, pfd, name)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=pfd)
            if self.keep_owner:
                with contextlib.suppress(OSError):
                    os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            with contextlib.suppress(OSError):
                os.utime(name, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
        elif m.islnk():
            target = member_parts(m.linkname)
            if "/".join(target) not in self.created:
                raise UnsafeArchive(f"refusing hard link {shown!r} to {m.linkname!r}: "
                                    "not a file of this copy")
            tfd = self.open_dir(target[:-1], create=False)
            try:
                st = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    raise UnsafeArchive(f"refusing hard link {shown!r} to a directory")
                os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(tfd)
        elif m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=pfd)
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=pfd)
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):
                    self.own(fd, m)
                    os.fchmod(fd, self.mode(m))
            finally:
                os.close(fd)
        self.created.add(shown)

    def write_file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, name: str) -> None:
        """Write the file under a temporary name, then rename it over `name`: a copy cut
        short (a truncated stream, Ctrl-C) leaves the file that was there as it was. The
        temporary file is locked while it is written (one a killed copy left is not,
        and the next copy into that directory removes it)."""
        sweep_partials(pfd, self.swept)
        temp = f"{PARTIAL_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if m.sparse is not None:  # (only its data came: the holes stay holes)
                    self.write_regions(tar, fd, m)
                    size = m.size
                else:
                    src = tar.extractfile(m)
                    assert src is not None
                    size = 0
                    while data := src.read(CHUNK):  # (runs of zeros stay holes: a box's
                        write_sparse(fd, data)      # sparse file does not fill this disk)
                        size += len(data)
                        self.result.bytes += len(data)
                os.ftruncate(fd, size)
                self.own(fd, m)
                os.fchmod(fd, self.mode(m))
                self.capability(fd, m)  # (after the owner and mode: a chown clears it)
                os.utime(fd, (m.mtime, m.mtime))
                os.rename(temp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            finally:
                os.close(fd)  # (the lock held up to the rename)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=pfd)
            raise

    def write_regions(self, tar: tarfile.TarFile, fd: int, m: tarfile.TarInfo) -> None:
        """A GNU sparse member: its data regions, stored one after the other (read from
        the stream as they come: tarfile's own reader of a sparse member yields its
        holes as zeros, and cannot seek in a stream), each at its offset."""
        end = 0
        regions = cast("list[tuple[int, int]]", m.sparse or [])  # (typeshed: list[int])
        raw = cast(IO[bytes], tar.fileobj)
        raw.seek(m.offset_data)  # (where the map ended: no move)
        for offset, length in regions:
            if offset < end or length < 0 or offset + length > m.size:
                raise UnsafeArchive(f"refusing sparse file {m.name!r}: its map is malformed")
            end = offset + length
            os.lseek(fd, offset, os.SEEK_SET)
            while length > 0:
                data = raw.read(min(CHUNK, length))
                if not data:
                    raise UnsafeArchive(f"the box's tar stream ended inside {m.name!r}")
                write_sparse(fd, data)
                length -= len(data)
                self.result.bytes += len(data)

    def privileges_kept(self, m: tarfile.TarInfo) -> bool:
        """Whether a file keeps what runs it with privileges (set-uid and set-gid bits, a
        capability): only with -a, and an owner that is ours (else the box's file
        would be ours, or run as someone else)."""
        return self.keep_owner and m.uid == os.geteuid() and m.gid == os.getegid()

    def mode(self, m: tarfile.TarInfo) -> int:
        mode = m.mode & 0o7777
        if not self.privileges_kept(m):
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        return mode

    def capability(self, fd: int, m: tarfile.TarInfo) -> None:
        """setcap's `security.capability` of the file, as set-uid bits are kept."""
        value = m.pax_headers.get(CAPABILITY)
        if value is None or not self.privileges_kept(m):
            return
        try:
            os.setxattr(fd, "security.capability", value.encode("utf-8", "surrogateescape"))
        except OSError as e:  # (CAP_SETFCAP is root's; a file system without xattrs)
            self.warn(f"the capability of {m.name!r} was not kept: {e.strerror}")

    def own(self, fd: int, m: tarfile.TarInfo) -> None:
        if self.keep_owner:
            with contextlib.suppress(OSError):  # only root may give files away
                os.fchown(fd, m.uid, m.gid)

    def finish_dirs(self) -> None:
        for parts, m in reversed(self.dirs):
            try:
                pfd = self.open_dir(parts[:-1], create=False)
            except (OSError, UnsafeArchive):
                continue
            try:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, dir_fd=pfd)
            except OSError:
                continue
            finally:
                os.close(pfd)
            try:
                self.own(fd, m)
                os.fchmod(fd, self.mode(m))
                os.utime(fd, (m.mtime, m.mtime))
            finally:
                os.close(fd)


def extract_tar(chunks: Iterator[bytes], dest: str, keep_owner: bool = False,
                warn: Warn = _no_warn, top: str = "") -> ExtractResult:
    """Extract the tar stream `chunks` into the existing directory `dest`; with `top`
    (the name of the one entry asked for), a member that is not it or below it is
    refused."""
    root_fd = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    ex = _Extract(root_fd, keep_owner, warn, top=top)
    try:
        reader = io.BufferedReader(ChunkReader(chunks), CHUNK)
        try:
            with tarfile.open(fileobj=reader, mode="r|", bufsize=TAR_BUFSIZE) as tar:
                for m in tar:
                    ex.member(tar, m)
        except tarfile.TarError as e:
            raise UnsafeArchive(f"the box sent a malformed tar stream: {e}") from e
        finally:
            ex.finish_dirs()
    finally:
        os.close(root_fd)
    return ex.result
