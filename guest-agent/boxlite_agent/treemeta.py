"""The box's root file system as metadata (boxlite diff): the walk of a copy out, each
entry a TreeEntry (kind, mode, owner, size, time, link target, device, setcap's
capability, when its inode changed) without its data, sent in batches."""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from boxlite_agent.copyfiles import TreeWalk, capability_of, kernel_devs, root_fd
from boxlite_agent.pb import agent_pb2 as pb

BATCH = 512  # entries a message (~50 KiB)
_KINDS = {tarfile.DIRTYPE: pb.TreeEntry.DIR, tarfile.SYMTYPE: pb.TreeEntry.SYMLINK,
          tarfile.CHRTYPE: pb.TreeEntry.CHR, tarfile.BLKTYPE: pb.TreeEntry.BLK,
          tarfile.FIFOTYPE: pb.TreeEntry.FIFO}


@dataclass
class _MetaWalk(TreeWalk[pb.TreeEntry]):
    def header(self, arcname: str, st: os.stat_result, kind: bytes,
               link: str = "") -> pb.TreeEntry:
        entry = pb.TreeEntry(path=os.fsencode(arcname), kind=_KINDS[kind],
                             mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                             mtime=int(st.st_mtime), link=os.fsencode(link),
                             ctime_ns=st.st_ctime_ns)
        if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            entry.dev_major, entry.dev_minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        return entry

    def regular(self, fd: int, arcname: str) -> Iterator[pb.TreeEntry]:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):  # (else swapped for something else after the lstat)
            yield pb.TreeEntry(path=os.fsencode(arcname), kind=pb.TreeEntry.FILE,
                               mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                               size=st.st_size, mtime=int(st.st_mtime),
                               capability=capability_of(fd) or b"", ctime_ns=st.st_ctime_ns)


def tree_chunks(root: str) -> Iterator[pb.TreeChunk]:
    """The entries below directory `root` (not itself; not into the kernel's file
    systems), a directory before what is in it, in batches."""
    with root_fd(root) as rfd:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=rfd)
        batch: list[pb.TreeEntry] = []
        for entry in _MetaWalk(kernel_devs(rfd)).tree(fd, "", os.fstat(fd)):
            batch.append(entry)
            if len(batch) >= BATCH:
                yield pb.TreeChunk(entries=batch)
                batch = []
        if batch:
            yield pb.TreeChunk(entries=batch)
