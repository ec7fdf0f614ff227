"""A host path as a stream of tar bytes, produced piece by piece (never whole files).

Symlinks below the source are stored as symlinks; the source itself is followed only
when asked (`cp -L`). Owners are the real ones: the guest applies them with `cp -a`,
and otherwise makes everything 0:0, like docker. A file's capability (setcap's) goes
with it, as in docker's tars.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from boxlite_cli.errors import Conflict, UsageError
from boxlite_cli.fdio import FdReader
from boxlite_cli.transfer.sparsewrite import sparse_member

CHUNK = 1 << 20
BLOCK = 512
END = bytes(2 * BLOCK)
Warn = Callable[[str], None]


def _no_warn(_: str) -> None:
    pass


CAPABILITY = "security.capability"  # (setcap's: the one xattr docker's tars carry)


def capability_of(fd: int) -> bytes | None:
    """The security.capability xattr of open file `fd`, if it has one."""
    try:
        return os.getxattr(fd, CAPABILITY)
    except OSError:  # (ENODATA: none; ENOTSUP: a file system without xattrs)
        return None


def header(name: str, st: os.stat_result, kind: bytes, size: int = 0, link: str = "",
           capability: bytes | None = None) -> bytes:
    return tar_info(name, st, kind, size, link, capability).tobuf(
        tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def tar_info(name: str, st: os.stat_result, kind: bytes, size: int = 0, link: str = "",
             capability: bytes | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if capability is not None:  # (a pax record, as GNU tar and docker write it)
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
    return info


def shrank(path: str) -> Callable[[int], Conflict]:
    """The error of a copy of `path`, which shrank by `missing` bytes while it was read."""
    return lambda missing: Conflict(f"cp: {path} shrank by {missing} bytes while it was "
                                    "copied", hint="copy it again once nothing is changing it")


def file_data(fd: int, size: int, path: str = "") -> Iterator[bytes]:
    """Exactly `size` bytes of an open file, then padding. A file that shrank while it
    was read fails the copy (docker's does; GNU tar pads it with zeros and exits 1): the
    box gets no file with zeros for what was not there. One that grew is cut at `size`."""
    left = size
    while left > 0:
        data = os.read(fd, min(CHUNK, left))
        if not data:
            raise shrank(path)(left)
        left -= len(data)
        yield data
    if size % BLOCK:
        yield bytes(BLOCK - size % BLOCK)


@dataclass
class _Writer:
    warn: Warn
    links: dict[tuple[int, int], str] = field(default_factory=dict)

    def tree(self, path: str, arcname: str, follow: bool) -> Iterator[bytes]:
        """`path` and everything below it, depth first in name order: a loop over a
        stack, not recursion (a tree may be deeper than Python's recursion limit)."""
        stack = [(path, arcname, follow)]
        while stack:
            yield from self.entry(*stack.pop(), stack)

    def entry(self, path: str, arcname: str, follow: bool,
              below: list[tuple[str, str, bool]]) -> Iterator[bytes]:
        """One entry; a directory's children are pushed on `below`, first name on top."""
        st = os.stat(path) if follow else os.lstat(path)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            if arcname:
                yield header(arcname, st, tarfile.DIRTYPE)
            for child in sorted(os.listdir(path), reverse=True):
                below.append((os.path.join(path, child),
                              f"{arcname}/{child}" if arcname else child, False))
        elif stat.S_ISREG(mode):
            flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | (0 if follow else os.O_NOFOLLOW)
            fd = os.open(path, flags)
            try:
                st = os.fstat(fd)
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in self.links:
                    yield header(arcname, st, tarfile.LNKTYPE, link=self.links[key])
                    return
                if st.st_nlink > 1:
                    self.links[key] = arcname
                info = tar_info(arcname, st, tarfile.REGTYPE, size=st.st_size,
                                capability=capability_of(fd))
                sparse = sparse_member(fd, info, st, shrank(path))  # (holes stay holes)
                if sparse is not None:
                    yield from sparse
                    return
                yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
                yield from file_data(fd, st.st_size, path)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            yield header(arcname, st, tarfile.SYMTYPE, link=os.readlink(path))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            yield header(arcname, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
        elif stat.S_ISFIFO(mode):
            yield header(arcname, st, tarfile.FIFOTYPE)
        else:
            self.warn(f"skipping {path}: a socket cannot be copied")


def tar_path(path: str, name: str, follow: bool = False, warn: Warn = _no_warn) -> Iterator[bytes]:
    """Tar bytes of host `path`, its top entry named `name` ("" = a directory's contents
    at the top level), ending with the end-of-archive blocks."""
    yield from _Writer(warn).tree(path, name, follow)
    yield END


def rechunk(pieces: Iterable[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Pieces coalesced into messages of about `size` bytes (at most twice that)."""
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


def read_tar_chunks(fd: int, size: int = CHUNK) -> Iterator[bytes]:
    """A tar stream on an open file (stdin) as chunks of the plain tar: gzip, bzip2, xz
    and zstd streams are decompressed (docker's cp takes them). UsageError when the stream
    does not decompress."""
    from boxlite_cli.compression import DECOMPRESSION_ERRORS, open_decompressed

    with io.BufferedReader(FdReader(fd)) as raw:
        data, kind = open_decompressed(raw)
        try:
            while chunk := data.read(size):
                yield chunk
        except DECOMPRESSION_ERRORS as e:
            raise UsageError(f"cp: the {kind} stream on stdin does not decompress: {e}") from None
