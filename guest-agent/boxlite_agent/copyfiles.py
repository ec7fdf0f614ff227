"""`boxlite cp` inside the guest: stat, tar out of and tar into the container root.

Every path is resolved by the kernel with ``openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_MAGICLINKS)`` from a descriptor of the container root: absolute symlink
targets and ``..`` stay inside the root, ``/proc/<pid>/root``-style magic links are
refused, and the kernel retries (or fails) a lookup that a concurrent rename could
have steered out. The last component is then created or opened relative to its
parent's descriptor with ``O_NOFOLLOW``, so a symlink a guest process swaps in while
a copy runs (CVE-2018-15664) can redirect an entry only to another place inside the
container, never outside it.

Tar streams are produced and consumed incrementally (1 MiB pieces), never whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import os
import re
import secrets
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import IO, Any, Generic, TypeVar, cast

from boxlite_agent import syscalls
from boxlite_agent.errors import FailedPrecondition, InvalidArgument, NotFound
from boxlite_agent.sparsetar import shrank, sparse_member

CHUNK = 1 << 20
TAR_BUFSIZE = 64 << 10  # (tarfile's stream copies what its buffer holds past each read: a
# 1 MiB buffer made every 512-byte header cost a 1 MiB copy)
BLOCK = 512
SYS_OPENAT2 = 437  # x86_64 and the generic syscall table
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
EAGAIN_RETRIES = 64
# Kernel file systems a walk does not descend into (docker's cp never sees them).
KERNEL_MOUNTS = ("proc", "sys", "dev", "dev/pts", "dev/shm")
Piece = TypeVar("Piece")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


@cache
def _syscall() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.syscall
    fn.restype = ctypes.c_long
    return fn


def openat2_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """Open container path ``path`` below the root descriptor ``root_fd``."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    raw = os.fsencode(path.lstrip("/") or ".")
    for _ in range(EAGAIN_RETRIES):
        fd = _syscall()(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(root_fd), ctypes.c_char_p(raw),
                        ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, "the path kept changing while it was resolved", path)


def clean_name(name: str) -> list[str]:
    """Components of a tar member name, relative; refuses ``..``."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"refusing tar entry {name!r}: it contains '..'")
    if any("\0" in p for p in parts):
        raise InvalidArgument(f"refusing tar entry {name!r}: NUL byte")
    return parts


def _container_join(*parts: str) -> str:
    joined = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return "/" + joined


def _split(path: str) -> tuple[str, str]:
    """(parent, name) of a container path; name "" for the root."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        return "/", ""
    return "/" + "/".join(parts[:-1]), parts[-1]


@contextlib.contextmanager
def root_fd(root: str) -> Iterator[int]:
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _not_found(path: str, e: OSError) -> Exception:
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(f"no such file or directory in the box: {path}")
    if e.errno == errno.ELOOP:
        return FailedPrecondition(f"{path}: too many levels of symbolic links (or a link into /proc)")
    return e


# stat ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathStat:
    exists: bool
    mode: int = 0
    size: int = 0
    link_target: str = ""
    name: str = ""


def stat_path(root: str, path: str, follow_link: bool) -> PathStat:
    _, name = _split(path)
    flags = os.O_PATH | (0 if follow_link else os.O_NOFOLLOW)
    with root_fd(root) as rfd:
        try:
            fd = openat2_in_root(rfd, path, flags)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return PathStat(False, name=name)
            raise _not_found(path, e) from e
        try:
            st = os.fstat(fd)
            target = os.readlink("", dir_fd=fd) if stat.S_ISLNK(st.st_mode) else ""
        finally:
            os.close(fd)
    return PathStat(True, st.st_mode, st.st_size, target, name)


# copy out --------------------------------------------------------------------------------


CAPABILITY = "security.capability"  # (the one xattr docker's tars carry: setcap's)


def capability_of(fd: int) -> bytes | None:
    """The security.capability xattr of open file `fd` (setcap's), if it has one."""
    try:
        return os.getxattr(fd, CAPABILITY)
    except OSError:
        return None


def _header(name: str, st: os.stat_result, kind: bytes, size: int = 0, link: str = "",
            capability: bytes | None = None) -> bytes:
    info = tarfile.TarInfo(name)
    if capability is not None:
        info.pax_headers = {f"SCHILY.xattr.{CAPABILITY}":
                            capability.decode("utf-8", "surrogateescape")}
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    info.size = size
    info.linkname = link
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _file_data(fd: int, size: int, name: str) -> Iterator[bytes]:
    """Exactly ``size`` bytes of the open file, then tar padding. One that shrank while it
    was read fails the copy (docker's does): no zeros for what was not there."""
    left = size
    while left > 0:
        data = os.read(fd, min(CHUNK, left))
        if not data:
            raise FailedPrecondition(shrank(name, left))
        left -= len(data)
        yield data
    if size % BLOCK:
        yield bytes(BLOCK - size % BLOCK)


@dataclass
class _Dir:
    """An open directory of the walk, until the last of its entries is taken."""

    fd: int
    dev: int
    pending: int = 0
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


@dataclass
class TreeWalk(Generic[Piece]):
    """A tree, depth first in name order, as pieces (a directory's before those of
    what is in it): a loop over a stack, not recursion (a tree can be deeper than
    Python's recursion limit); a directory stays open only while entries of it are
    still to come. What an entry becomes is the subclass's (`header`, `regular`)."""

    skip_devs: set[int]

    def header(self, arcname: str, st: os.stat_result, kind: bytes, link: str = "") -> Piece:
        """The piece of an entry that is not a regular file (`kind`: a tar type)."""
        raise NotImplementedError

    def regular(self, fd: int, arcname: str) -> Iterator[Piece]:
        """The pieces of the regular file open as `fd`."""
        raise NotImplementedError

    def tree(self, fd: int, arcname: str, st: os.stat_result) -> Iterator[Piece]:
        """Directory `fd` (ours to close) and everything below it."""
        stack: list[tuple[_Dir, str, str]] = []
        opened: list[_Dir] = []
        try:
            yield from self.directory(fd, arcname, st, None, stack, opened)
            while stack:
                parent, name, child_arcname = stack.pop()
                try:
                    yield from self.entry(parent, name, child_arcname, stack, opened)
                finally:
                    parent.pending -= 1
                    if parent.pending == 0:
                        parent.close()
        finally:
            for d in opened:
                d.close()

    def entry(self, parent: _Dir, name: str, arcname: str, stack: list[tuple[_Dir, str, str]],
              opened: list[_Dir]) -> Iterator[Piece]:
        """One entry of directory `parent`, as pieces (a directory's own entries are
        pushed on `stack`)."""
        dfd = parent.fd
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return  # removed while we walked
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW,
                             dir_fd=dfd)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    return  # swapped while we walked: skip it
                raise
            yield from self.directory(fd, arcname, os.fstat(fd), parent.dev, stack, opened)
        elif stat.S_ISREG(mode):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
                             | os.O_NOFOLLOW, dir_fd=dfd)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
                    return
                raise
            try:
                yield from self.regular(fd, arcname)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            try:
                link = os.readlink(name, dir_fd=dfd)
            except OSError as e:
                # (a symlink the host made on a -v share: 9p's mapped-xattr model cannot
                # read it; left out, as a socket is, not the end of the whole copy)
                if e.errno in (errno.ENOENT, errno.ELOOP):
                    return
                raise
            yield self.header(arcname, st, tarfile.SYMTYPE, link=link)
        elif stat.S_ISCHR(mode):
            yield self.header(arcname, st, tarfile.CHRTYPE)
        elif stat.S_ISBLK(mode):
            yield self.header(arcname, st, tarfile.BLKTYPE)
        elif stat.S_ISFIFO(mode):
            yield self.header(arcname, st, tarfile.FIFOTYPE)
        # sockets have no tar form: left out, as tar and docker do

    def top(self, opath: int, st: os.stat_result, arcname: str) -> Iterator[Piece]:
        """The entry an O_PATH descriptor names (the copy's source) and what is below it."""
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=opath)
            yield from self.tree(fd, arcname, os.fstat(fd))
        elif stat.S_ISREG(mode):
            fd = os.open(f"/proc/self/fd/{opath}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY
                         | os.O_CLOEXEC)
            try:
                yield from self.regular(fd, arcname)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            yield self.header(arcname, st, tarfile.SYMTYPE, link=os.readlink("", dir_fd=opath))
        elif stat.S_ISCHR(mode):
            yield self.header(arcname, st, tarfile.CHRTYPE)
        elif stat.S_ISBLK(mode):
            yield self.header(arcname, st, tarfile.BLKTYPE)
        elif stat.S_ISFIFO(mode):
            yield self.header(arcname, st, tarfile.FIFOTYPE)

    def directory(self, fd: int, arcname: str, st: os.stat_result, parent_dev: int | None,
                  stack: list[tuple[_Dir, str, str]], opened: list[_Dir]) -> Iterator[Piece]:
        """A directory's own entry; its entries go on `stack` (the first name on top),
        and `fd` is closed once the last of them is taken (now, if it has none)."""
        d = _Dir(fd, st.st_dev)
        opened.append(d)
        if arcname:
            yield self.header(arcname, st, tarfile.DIRTYPE)
        if st.st_dev in self.skip_devs and st.st_dev != parent_dev:
            d.close()  # a kernel file system mounted here (or the copy's top): the entry only
            return
        with os.scandir(fd) as it:
            names = sorted((e.name for e in it), reverse=True)
        if not names:
            d.close()
            return
        d.pending = len(names)
        stack.extend((d, child, f"{arcname}/{child}" if arcname else child) for child in names)


@dataclass
class _TarWalk(TreeWalk[bytes]):
    """The tar bytes of a tree."""

    sparse: bool = False  # sparse files as sparse members (sparsetar.py)
    links: dict[tuple[int, int], str] = field(default_factory=dict)

    def header(self, arcname: str, st: os.stat_result, kind: bytes, link: str = "") -> bytes:
        return _header(arcname, st, kind, link=link)

    def regular(self, fd: int, arcname: str) -> Iterator[bytes]:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return  # swapped for something else after the lstat
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            if key in self.links:
                yield _header(arcname, st, tarfile.LNKTYPE, link=self.links[key])
                return
            self.links[key] = arcname
        holes = sparse_member(fd, arcname, st) if self.sparse else None
        if holes is not None:
            yield from holes
            return
        yield _header(arcname, st, tarfile.REGTYPE, size=st.st_size, capability=capability_of(fd))
        yield from _file_data(fd, st.st_size, arcname)

def kernel_devs(rfd: int) -> set[int]:
    """The devices of the kernel file systems mounted in the root `rfd` (not its own)."""
    devs = set()
    for path in KERNEL_MOUNTS:
        with contextlib.suppress(OSError):
            devs.add(os.stat(path, dir_fd=rfd).st_dev)
    with contextlib.suppress(OSError):
        devs.discard(os.stat(".", dir_fd=rfd).st_dev)
    return devs


@contextlib.contextmanager
def root_fs_view(root: str, mount: Callable[..., None] = syscalls.mount,
                 umount: Callable[..., None] = syscalls.umount) -> Iterator[str]:
    """The file system mounted at ``root`` alone, as it is on its disk: a read-only
    bind mount of it beside it, without what is mounted on it (volumes, tmpfs, the
    kernel's, the box's /etc/hosts...), whose files it shows as they are underneath;
    gone afterwards (`commit` reads a box's own changes from it)."""
    view = os.path.join(os.path.dirname(root), f"view-{secrets.token_hex(6)}")
    os.mkdir(view, 0o700)
    try:
        mount(root, view, None, syscalls.MS_BIND)  # (not MS_REC: no submounts)
        try:
            mount(None, view, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY)
            yield view
        finally:
            umount(view, syscalls.MNT_DETACH)
    finally:
        os.rmdir(view)


def tar_out(root: str, path: str, follow_link: bool, name: str,
            sparse: bool = False) -> Iterator[bytes]:
    """Tar bytes of container path ``path``, its top entry named ``name`` ("" = the
    contents of a directory at the top level); ``sparse``: sparse files as GNU sparse
    members. Raises NotFound before yielding."""
    if name:
        clean_name(name)
    with root_fd(root) as rfd:
        flags = os.O_PATH | (0 if follow_link else os.O_NOFOLLOW)
        try:
            top = openat2_in_root(rfd, path, flags)
        except OSError as e:
            raise _not_found(path, e) from e
        try:
            st = os.fstat(top)
            if not name and not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"{path} is not a directory")
            yield from _TarWalk(kernel_devs(rfd), sparse).top(top, st, name)
        finally:
            os.close(top)
        yield bytes(2 * BLOCK)


def tar_paths(root: str, paths: Iterable[str]) -> Iterator[bytes]:
    """Tar bytes of each of container ``paths`` by itself: a directory's entry without
    what is in it, a file with its data (one linked to a file already in the tar, as a
    hard link to it); one that is not there, or a socket, is left out."""
    with root_fd(root) as rfd:
        walk = _TarWalk(set())
        for path in paths:
            name = "/".join(clean_name(path))
            if not name:
                continue
            try:
                opath = openat2_in_root(rfd, name, os.O_PATH | os.O_NOFOLLOW)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENOTDIR):
                    continue  # (gone: a box committed without its freeze changes on)
                raise
            try:
                st = os.fstat(opath)
                if stat.S_ISDIR(st.st_mode):
                    yield _header(name, st, tarfile.DIRTYPE)
                else:
                    yield from walk.top(opath, st, name)
            finally:
                os.close(opath)
        yield bytes(2 * BLOCK)


def rechunk(pieces: Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Pieces coalesced into messages of about ``size`` bytes (never more than 2x)."""
    buf = bytearray()
    for piece in pieces:
        if len(piece) >= size and not buf:
            yield piece
            continue
        buf += piece
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


# copy in ---------------------------------------------------------------------------------


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


@dataclass
class CopyInResult:
    entries: int = 0
    bytes: int = 0


_TYPE_CHECK = {
    tarfile.DIRTYPE: stat.S_ISDIR,
    tarfile.SYMTYPE: stat.S_ISLNK,
    tarfile.CHRTYPE: stat.S_ISCHR,
    tarfile.BLKTYPE: stat.S_ISBLK,
    tarfile.FIFOTYPE: stat.S_ISFIFO,
}


PARTIAL_PREFIX = ".boxlite-cp-"
_PARTIAL = re.compile(re.escape(PARTIAL_PREFIX) + "[0-9a-f]{16}")


class _Extractor:
    def __init__(self, rfd: int, dest: str, keep_owner: bool, stale_before: float = 0.0) -> None:
        self.rfd, self.dest, self.keep_owner = rfd, dest, keep_owner
        self.stale_before = stale_before
        self.swept: set[tuple[int, int]] = set()  # the directories seen to
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        self.result = CopyInResult()
        # The directory the last member went into, kept open for the next ones (a tar
        # lists a directory's files together): one path resolution a directory, not a
        # file. An O_PATH fd of a directory resolved in the root stays in it, whatever
        # the box renames meanwhile.
        self.last_parent: tuple[tuple[str, ...], int] | None = None

    def sweep(self, pfd: int) -> None:
        """Remove from the directory `pfd` the partial files of copies that a stop cut
        off (older than this run's start: no copy of this run writes them); once."""
        st = os.fstat(pfd)
        if not self.stale_before or (st.st_dev, st.st_ino) in self.swept:
            return
        self.swept.add((st.st_dev, st.st_ino))
        with contextlib.suppress(OSError):
            dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
            try:
                names = [n for n in os.listdir(dfd) if _PARTIAL.fullmatch(n)]
            finally:
                os.close(dfd)
            for name in names:
                with contextlib.suppress(OSError):
                    old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                    if stat.S_ISREG(old.st_mode) and old.st_mtime < self.stale_before:
                        os.unlink(name, dir_fd=pfd)

    def owner(self, m: tarfile.TarInfo) -> tuple[int, int]:
        return (m.uid, m.gid) if self.keep_owner else (0, 0)

    def parent_fd(self, parts: list[str]) -> int:
        path = _container_join(self.dest, *parts)
        try:
            return openat2_in_root(self.rfd, path, os.O_PATH | os.O_DIRECTORY)
        except FileNotFoundError:
            pass
        # Missing parents (a tar without directory entries): made on the way.
        fd = openat2_in_root(self.rfd, self.dest, os.O_PATH | os.O_DIRECTORY)
        sofar = self.dest
        try:
            for part in parts:
                sofar = _container_join(sofar, part)
                try:
                    nfd = openat2_in_root(self.rfd, sofar, os.O_PATH | os.O_DIRECTORY)
                except FileNotFoundError:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:  # (a directory another copy just made is good)
                        if not stat.S_ISDIR(os.stat(part, dir_fd=fd,
                                                    follow_symlinks=False).st_mode):
                            raise FailedPrecondition(
                                f"{sofar} is a symbolic link to a missing directory") from None
                    nfd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  dir_fd=fd)
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def parent_of(self, parts: list[str]) -> int:
        """parent_fd(parts), the last one's kept open for the members after it."""
        key = tuple(parts)
        if self.last_parent is not None:
            if self.last_parent[0] == key:
                return self.last_parent[1]
            self.close()
        fd = self.parent_fd(parts)
        self.last_parent = (key, fd)
        return fd

    def close(self) -> None:
        if self.last_parent is not None:
            os.close(self.last_parent[1])
            self.last_parent = None

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = clean_name(m.name)
        if not parts:
            if m.isdir():
                self.dirs.append(("", m))
            return
        try:
            self.place(tar, m, self.parent_of(parts[:-1]), parts)
        except OSError as e:
            where = _container_join(self.dest, *parts)
            raise FailedPrecondition(f"cannot copy to {where}: {e.strerror or e}") from e
        self.result.entries += 1

    def place(self, tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, parts: list[str]) -> None:
        name = parts[-1]
        shown = _container_join(self.dest, *parts)
        try:
            old: os.stat_result | None = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None:
            if stat.S_ISDIR(old.st_mode) and not m.isdir():
                raise FailedPrecondition(f"cannot overwrite directory {shown} with non-directory")
            if not stat.S_ISDIR(old.st_mode) and m.isdir():
                raise FailedPrecondition(f"cannot overwrite non-directory {shown} with directory")
            if not m.isdir() and not m.isreg():  # (a file replaces it by a rename)
                os.unlink(name, dir_fd=pfd)
        uid, gid = self.owner(m)
        mode = m.mode & 0o7777
        if m.isdir():
            if old is None:
                # (another copy into the same place may make it meanwhile: a directory
                # there is as good)
                try:
                    os.mkdir(name, 0o700, dir_fd=pfd)
                except FileExistsError:
                    now = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                    if not stat.S_ISDIR(now.st_mode):
                        raise
            self.dirs.append(("/".join(parts), m))
            return
        if m.isreg():
            # Written beside it, then renamed over it: a copy that fails half-way (a full
            # disk, a broken stream) leaves what was there, not half a file.
            self.sweep(pfd)
            partial = f"{PARTIAL_PREFIX}{secrets.token_hex(8)}"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            try:
                try:
                    if m.sparse is not None:  # (the host's cp: its data regions alone)
                        self.result.bytes += _write_regions(tar, fd, m)
                    else:
                        src = tar.extractfile(m)
                        assert src is not None
                        while data := src.read(CHUNK):
                            _write_skipping_zeros(fd, data)
                            self.result.bytes += len(data)
                    os.ftruncate(fd, m.size)  # (zeros skipped at its end have no size)
                    os.fchown(fd, uid, gid)
                    os.fchmod(fd, mode)
                    _set_capability(fd, m)  # (after the owner: a chown clears it)
                    os.utime(fd, (m.mtime, m.mtime))
                finally:
                    os.close(fd)
                os.rename(partial, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(partial, dir_fd=pfd)
                raise
            return
        if m.issym():
            os.symlink(m.linkname, name, dir_fd=pfd)
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            with contextlib.suppress(OSError):
                os.utime(name, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
            return
        if m.islnk():
            target = _container_join(self.dest, *clean_name(m.linkname))
            try:
                tfd = openat2_in_root(self.rfd, target, os.O_PATH | os.O_NOFOLLOW)
            except OSError as e:
                raise FailedPrecondition(f"hard link {shown}: target {target} is missing") from e
            try:
                if stat.S_ISDIR(os.fstat(tfd).st_mode):
                    raise FailedPrecondition(f"hard link {shown}: target {target} is a directory")
                os.link(f"/proc/self/fd/{tfd}", name, dst_dir_fd=pfd, follow_symlinks=True)
            finally:
                os.close(tfd)
            return
        if m.ischr() or m.isblk():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        elif m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=pfd)
        else:
            return  # unknown kinds are left out
        self.fix(pfd, name, m, uid, gid)

    def fix(self, pfd: int, name: str, m: tarfile.TarInfo, uid: int, gid: int) -> None:
        """Owner, mode, times of a just-made special file, through an O_NOFOLLOW handle."""
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            check = _TYPE_CHECK.get(m.type)
            if check is None or not check(os.fstat(fd).st_mode):
                return  # swapped meanwhile: leave it
            via = f"/proc/self/fd/{fd}"
            os.chown(via, uid, gid)
            os.chmod(via, m.mode & 0o7777)
            os.utime(via, (m.mtime, m.mtime))
        finally:
            os.close(fd)

    def finish_dirs(self) -> None:
        for rel, m in reversed(self.dirs):
            if not rel:
                continue  # the destination directory itself keeps its metadata
            try:
                fd = openat2_in_root(self.rfd, _container_join(self.dest, rel),
                                     os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                uid, gid = self.owner(m)
                os.fchown(fd, uid, gid)
                os.fchmod(fd, m.mode & 0o7777)
                os.utime(fd, (m.mtime, m.mtime))
            finally:
                os.close(fd)


def _set_capability(fd: int, m: tarfile.TarInfo) -> None:
    """The capability (setcap's) a member's pax record carries, as docker's cp sets it;
    a file system without xattrs goes without (docker's too), a bad value fails."""
    value = m.pax_headers.get(f"SCHILY.xattr.{CAPABILITY}")
    if value is None:
        return
    try:
        os.setxattr(fd, CAPABILITY, value.encode("utf-8", "surrogateescape"))
    except OSError as e:
        if e.errno not in (errno.ENOTSUP, errno.EPERM):
            raise


def _write_regions(tar: tarfile.TarFile, fd: int, m: tarfile.TarInfo) -> int:
    """A GNU sparse member's data regions, stored one after the other, each written at
    its offset, the holes left holes (read from the stream as they come: tarfile's own
    reader gives the holes as zeros, gigabytes to look at, and cannot seek in a stream);
    the bytes written."""
    raw = cast(IO[bytes], tar.fileobj)
    raw.seek(m.offset_data)  # (where the map ended: no move)
    written, end = 0, 0
    for offset, length in cast("list[tuple[int, int]]", m.sparse or []):
        if offset < end or length < 0 or offset + length > m.size:
            raise InvalidArgument(f"invalid tar stream: {m.name!r} has a bad sparse map")
        end = offset + length
        os.lseek(fd, offset, os.SEEK_SET)
        while length > 0:
            data = raw.read(min(CHUNK, length))
            if not data:
                raise InvalidArgument(f"invalid tar stream: {m.name!r} is cut short")
            _write_skipping_zeros(fd, data)
            length -= len(data)
            written += len(data)
    return written


HOLE_BLOCK = 64 << 10  # an all-zero run this long, so aligned, is left a hole
_ZEROS = bytes(HOLE_BLOCK)


def _write_skipping_zeros(fd: int, data: bytes) -> None:
    """`data` at the file's offset, with a seek over each aligned all-zero block: a
    sparse file copied in (its holes come as zeros: docker's tars have no holes) stays
    sparse, and does not fill the box's disk. The caller sets the size at the end."""
    view = memoryview(data)
    for start in range(0, len(view), HOLE_BLOCK):
        piece = view[start:start + HOLE_BLOCK]
        if len(piece) == HOLE_BLOCK and piece == _ZEROS:
            os.lseek(fd, HOLE_BLOCK, os.SEEK_CUR)
        else:
            while piece:
                piece = piece[os.write(fd, piece):]


def tar_in(root: str, dest_dir: str, keep_owner: bool, chunks: Iterator[bytes],
           stale_before: float = 0.0) -> CopyInResult:
    """Extract the tar stream ``chunks`` into container directory ``dest_dir``; the
    partial files of copies cut off before ``stale_before`` (the box stopped under them)
    that lie where this one writes files go."""
    with root_fd(root) as rfd:
        try:
            dfd = openat2_in_root(rfd, dest_dir, os.O_PATH | os.O_DIRECTORY)
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                raise FailedPrecondition(f"{dest_dir} is not a directory in the box") from e
            raise _not_found(dest_dir, e) from e
        os.close(dfd)
        ex = _Extractor(rfd, dest_dir, keep_owner, stale_before)
        reader = io.BufferedReader(ChunkReader(chunks), CHUNK)
        try:
            try:
                with tarfile.open(fileobj=reader, mode="r|", bufsize=TAR_BUFSIZE) as tar:
                    for m in tar:
                        ex.member(tar, m)
            except tarfile.TarError as e:
                raise InvalidArgument(f"invalid tar stream: {e}") from e
        except BaseException:
            ex.close()
            # (a copy that fails half-way leaves the directories it made with their own
            # modes, not the 0700 they are made with)
            with contextlib.suppress(OSError):
                ex.finish_dirs()
            raise
        ex.close()
        ex.finish_dirs()
        return ex.result
