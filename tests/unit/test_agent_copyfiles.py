"""The agent's cp: stat, tar out of and into a container root that it never leaves."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.copyfiles import rechunk, stat_path, tar_in, tar_out, tar_paths
from boxlite_agent.errors import FailedPrecondition, InvalidArgument, NotFound

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="extraction chowns to 0:0 (root)")


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """(container root, a host directory beside it that must stay untouched)."""
    root, host = tmp_path / "root", tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    host.mkdir()
    (host / "secret").write_text("secret")
    (root / "data" / "to_etc").symlink_to("/etc")
    (root / "data" / "up").symlink_to("../../../host")
    (root / "data" / "abs_host").symlink_to(str(host))
    return root, host


def _tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.uid = 1234
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _names(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar}


def test_stat_resolves_inside_the_root(world: tuple[Path, Path]) -> None:
    root, _ = world
    link = stat_path(str(root), "/data/to_etc", follow_link=False)
    assert link.exists and link.link_target == "/etc"
    followed = stat_path(str(root), "/data/to_etc/passwd", follow_link=True)
    assert followed.exists and followed.size == len("root:x:0:0::/root:/bin/sh\n")
    # "../../../host" and the absolute host path both stay inside the root: not found.
    assert not stat_path(str(root), "/data/up/secret", True).exists
    assert not stat_path(str(root), "/data/abs_host/secret", True).exists


def test_tar_out_names_and_symlinks(world: tuple[Path, Path]) -> None:
    root, _ = world
    data = b"".join(tar_out(str(root), "/data", False, "copy"))
    names = _names(data)
    assert names["copy/to_etc"].issym() and names["copy/to_etc"].linkname == "/etc"
    assert "copy/to_etc/passwd" not in names
    followed = _names(b"".join(tar_out(str(root), "/data/to_etc", True, "etc")))
    assert "etc/passwd" in followed
    contents = _names(b"".join(tar_out(str(root), "/etc", False, "")))
    assert list(contents) == ["passwd"]


def test_tar_out_of_an_escaping_link_stays_inside(world: tuple[Path, Path]) -> None:
    root, _ = world
    with pytest.raises(NotFound):
        b"".join(tar_out(str(root), "/data/abs_host/secret", True, "x"))


def test_tar_out_contents_of_a_file_is_refused(world: tuple[Path, Path]) -> None:
    root, _ = world
    with pytest.raises(InvalidArgument):
        b"".join(tar_out(str(root), "/etc/passwd", False, ""))


def test_rechunk() -> None:
    assert b"".join(rechunk(iter([b"a"] * 10), 3)) == b"a" * 10


@root_only
def test_tar_in_follows_links_inside_the_root_only(world: tuple[Path, Path]) -> None:
    root, host = world
    result = tar_in(str(root), "/data", False, iter([_tar({"to_etc/new": b"1"})]))
    assert (root / "etc" / "new").read_bytes() == b"1"
    assert result.entries == 1
    # The host path the link names does not exist inside the root: refused there.
    with pytest.raises(FailedPrecondition, match="missing directory"):
        tar_in(str(root), "/data", False, iter([_tar({"abs_host/x/y": b"2"})]))
    (root / str(host).lstrip("/")).mkdir(parents=True)
    tar_in(str(root), "/data", False, iter([_tar({"abs_host/x/y": b"2"})]))
    assert (root / str(host).lstrip("/") / "x" / "y").read_bytes() == b"2"
    assert sorted(p.name for p in host.iterdir()) == ["secret"]
    assert (root / "etc" / "new").stat().st_uid == 0  # no -a: root-owned


@root_only
def test_tar_in_keeps_owner_with_archive(world: tuple[Path, Path]) -> None:
    root, _ = world
    tar_in(str(root), "/data", True, iter([_tar({"f": b"x"})]))
    assert (root / "data" / "f").stat().st_uid == 1234


@root_only
@pytest.mark.parametrize("name", ["../x", "a/../../x"])
def test_tar_in_refuses_dotdot(world: tuple[Path, Path], name: str) -> None:
    root, _ = world
    with pytest.raises(InvalidArgument):
        tar_in(str(root), "/data", False, iter([_tar({name: b"x"})]))


@root_only
def test_tar_in_dangling_link_parent(world: tuple[Path, Path]) -> None:
    root, host = world
    with pytest.raises(FailedPrecondition, match="symbolic link"):
        tar_in(str(root), "/data", False, iter([_tar({"up/secret": b"evil"})]))
    assert (host / "secret").read_text() == "secret"


def test_tar_in_missing_destination(world: tuple[Path, Path]) -> None:
    root, _ = world
    with pytest.raises(NotFound):
        tar_in(str(root), "/nope", False, iter([_tar({"f": b"x"})]))
    with pytest.raises(FailedPrecondition, match="not a directory"):
        tar_in(str(root), "/etc/passwd", False, iter([_tar({"f": b"x"})]))


@root_only
def test_tar_in_against_a_racing_symlink_swap(world: tuple[Path, Path]) -> None:
    """CVE-2018-15664: a guest process swaps a directory and a symlink to `/` (of the
    host, here) while files are copied into it: nothing lands outside the root."""
    root, host = world
    target = root / "data" / "swap"
    stop = threading.Event()

    def swapper() -> None:
        real, link = root / "data" / "swap.dir", root / "data" / "swap.link"
        real.mkdir()
        link.symlink_to(str(host))
        while not stop.is_set():
            for src in (real, link):
                try:
                    os.rename(src, target)
                    os.rename(target, src)
                except OSError:
                    pass

    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        for i in range(200):
            with contextlib.suppress(FailedPrecondition, NotFound, OSError):
                tar_in(str(root), "/data", False, iter([_tar({f"swap/f{i}": b"evil"})]))
    finally:
        stop.set()
        thread.join()
    assert sorted(p.name for p in host.iterdir()) == ["secret"]


def test_a_copy_that_breaks_half_way_leaves_the_old_file(world: tuple[Path, Path]) -> None:
    """A file is written beside its name and renamed over it: a stream that breaks
    (or a full disk) leaves what was there, and no partial file."""
    root, _ = world
    (root / "data" / "keep").write_text("old content")
    whole = _tar({"keep": b"n" * (8 << 20)})

    def broken() -> Iterator[bytes]:  # (past the reader's first buffers: into the file)
        yield from (whole[i:i + (64 << 10)] for i in range(0, 6 << 20, 64 << 10))
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(FailedPrecondition, match="No space left"):
        tar_in(str(root), "/data", False, broken())
    assert (root / "data" / "keep").read_text() == "old content"
    assert sorted(p.name for p in (root / "data").iterdir()) == ["abs_host", "keep", "to_etc",
                                                                 "up"]
    tar_in(str(root), "/data", False, iter([whole]))  # a whole one replaces it
    assert (root / "data" / "keep").read_bytes() == b"n" * (8 << 20)


def test_tar_out_of_a_tree_deeper_than_the_recursion_limit(world: tuple[Path, Path]) -> None:
    """Walked with a stack, not recursion (RecursionError at ~1000 levels before), and
    a directory is closed once its last entry is taken (not one fd per level)."""
    root, _ = world
    depth = sys.getrecursionlimit() + 200
    fd = os.open(root, os.O_RDONLY)
    try:
        os.mkdir("deep", dir_fd=fd)
        for i in range(depth):
            inner = os.open("deep" if i == 0 else "d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
            os.mkdir("d", dir_fd=fd)
            if i == depth - 1:
                os.close(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    fds_before = len(os.listdir("/proc/self/fd"))
    most = 0
    chunks = []
    try:
        for chunk in tar_out(str(root), "/deep", False, "deep"):
            chunks.append(chunk)
            most = max(most, len(os.listdir("/proc/self/fd")) - fds_before)
    finally:  # (pytest's own clean-up of tmp_path would recurse too deep)
        subprocess.run(["rm", "-rf", str(root / "deep")], check=True)
    assert most < 10
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        names = tar.getnames()
    bottom = "deep/" + "d/" * (depth - 1)
    assert names[0] == "deep" and names[-1] == bottom + "leaf"
    assert bottom + "d" in names
    assert names == sorted(names, key=lambda n: n.split("/"))  # (depth first, by name)


def test_a_copy_sweeps_the_partials_an_earlier_run_left_where_it_writes(
        world: tuple[Path, Path]) -> None:
    """A box stopped under a `cp` kept its hidden partial file for good; the next copy
    into that directory removes partials older than this run's start, and not a partial
    of this run (another copy still writing it), nor a file that only looks alike."""
    import time

    root, _ = world
    (root / "data").mkdir(exist_ok=True)
    old = root / "data/.boxlite-cp-0123456789abcdef"
    current = root / "data/.boxlite-cp-fedcba9876543210"
    mine = root / "data/.boxlite-cp-mine"
    for path in (old, current, mine):
        path.write_bytes(b"half")
    os.utime(old, (time.time() - 60, time.time() - 60))
    os.utime(mine, (time.time() - 60, time.time() - 60))
    tar_in(str(root), "/data", False, iter([_tar({"new": b"1"})]), stale_before=time.time() - 30)
    assert (root / "data/new").read_bytes() == b"1"
    assert not old.exists()
    assert current.exists() and mine.exists()
    os.utime(current, (time.time() - 60, time.time() - 60))
    tar_in(str(root), "/data", False, iter([_tar({"new": b"2"})]))  # (before any Init: none)
    assert current.exists()


# commit's view of the root file system alone ------------------------------------------

def test_the_root_fs_view_is_bound_read_only_and_gone_afterwards(tmp_path: Path) -> None:
    from boxlite_agent import syscalls
    from boxlite_agent.copyfiles import root_fs_view

    root = tmp_path / "rootfs"
    root.mkdir()
    calls: list[tuple[object, ...]] = []
    with pytest.raises(RuntimeError), root_fs_view(
            str(root), mount=lambda *a: calls.append(("mount", *a)),
            umount=lambda *a: calls.append(("umount", *a))) as view:
        assert os.path.dirname(view) == str(tmp_path) and os.path.isdir(view)
        raise RuntimeError("the copy failed")
    assert calls == [("mount", str(root), view, None, syscalls.MS_BIND),
                     ("mount", None, view, None,
                      syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY),
                     ("umount", view, syscalls.MNT_DETACH)]
    assert sorted(os.listdir(tmp_path)) == ["rootfs"]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root)")
def test_the_root_fs_view_shows_what_mounts_cover(tmp_path: Path) -> None:
    from boxlite_agent import syscalls
    from boxlite_agent.copyfiles import root_fs_view

    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("the image's\n")
    try:
        syscalls.mount("tmpfs", str(root / "etc"), "tmpfs", 0, None)
    except OSError as e:
        pytest.skip(f"no mounts here: {e}")
    try:
        (root / "etc" / "hosts").write_text("the box's\n")
        with root_fs_view(str(root)) as view:
            data = b"".join(tar_out(view, "/", False, ""))
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                names = [m.name for m in tar]
            assert (Path(view) / "etc" / "hosts").read_text() == "the image's\n"
            with pytest.raises(OSError):
                (Path(view) / "new").write_text("x")  # (read-only)
        assert names == ["etc", "etc/hosts"]
    finally:
        syscalls.umount(str(root / "etc"))


def test_a_files_capability_goes_with_it(tmp_path: Path) -> None:
    """setcap's xattr (security.capability) is in the tar, as docker's tars carry it."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "ping").write_bytes(b"ELF")
    value = bytes.fromhex("0100000200200000000000000000000000000000")
    try:
        os.setxattr(root / "ping", "security.capability", value)
    except OSError as e:
        pytest.skip(f"no file capabilities here: {e}")
    data = b"".join(tar_out(str(root), "/", False, ""))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        [member] = tar.getmembers()
    assert member.pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == value
    from boxlite_agent.treemeta import tree_chunks

    [chunk] = tree_chunks(str(root))
    assert chunk.entries[0].capability == value  # (and so in diff's listing)


@root_only
def test_a_copy_that_fails_half_way_leaves_its_directories_modes(
        world: tuple[Path, Path]) -> None:
    """Directories are made 0700 and given their modes at the end: at a failed end too
    (tester AS: drwx------ left behind)."""
    root, _ = world
    (root / "data" / "zz").mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("aa", "aa/bb"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.addfile(tarfile.TarInfo("aa/bb/f"), io.BytesIO(b""))
        tar.addfile(tarfile.TarInfo("zz"), io.BytesIO(b""))  # (onto a directory: refused)
    with pytest.raises(FailedPrecondition, match="cannot overwrite directory"):
        tar_in(str(root), "/data", False, iter([buf.getvalue()]))
    assert [oct((root / "data" / p).stat().st_mode & 0o7777) for p in ("aa", "aa/bb")] == [
        "0o755", "0o755"]


@root_only
def test_a_directory_another_copy_makes_meanwhile_is_as_good(
        world: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `cp`s of one tree into one place at once: one failed with "File exists"
    (tester AS), or said a parent was "a symbolic link to a missing directory"."""
    root, _ = world
    real_mkdir = os.mkdir

    def raced(path: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(path, 0o755, dir_fd=dir_fd)  # (the other copy's, first)
        real_mkdir(path, mode, dir_fd=dir_fd)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("tree")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        tar.addfile(tarfile.TarInfo("tree/sub/f"), io.BytesIO(b""))  # (its parent: unlisted)
    monkeypatch.setattr(os, "mkdir", raced)
    tar_in(str(root), "/data", False, iter([buf.getvalue()]))
    monkeypatch.undo()
    assert (root / "data" / "tree" / "sub" / "f").is_file()


@root_only
def test_zeros_copied_in_stay_holes_and_the_file_its_size(world: tuple[Path, Path]) -> None:
    """A sparse file copied in comes as zeros (a plain tar, docker's): written as holes,
    it does not fill the box's disk (tester AS: a 10 GB one did)."""
    root, _ = world
    content = b"head" + bytes(3 << 20) + b"tail" + bytes(1 << 20)  # (zeros at its end too)
    tar_in(str(root), "/data", False, iter([_tar({"sparse": content})]))
    copied = root / "data" / "sparse"
    assert copied.read_bytes() == content
    assert copied.stat().st_blocks * 512 < 1 << 20  # (not the 4 MiB of its zeros)


@pytest.mark.parametrize("sparse", [False, True])
def test_a_file_that_shrinks_while_it_is_copied_out_fails_the_copy(tmp_path: Path,
                                                                  sparse: bool) -> None:
    """It was padded with zeros and cp said 0 (tester AT); docker's fails."""
    root = tmp_path / "root"
    root.mkdir()
    big = root / "big"
    with open(big, "wb") as f:
        f.write(os.urandom(3 << 20))
        if sparse:  # (holes enough for a sparse member)
            f.truncate(8 << 20)
            f.seek(8 << 20)
            f.write(b"end")
    pieces = tar_out(str(root), "/big", False, "big", sparse=sparse)
    next(pieces), next(pieces)  # (under way)
    os.truncate(big, 1 << 20)
    with pytest.raises(FailedPrecondition, match=r"big shrank by [0-9]+ bytes while it was "
                                                 r"copied"):
        list(pieces)


@root_only
def test_a_sparse_member_from_the_host_lands_sparse(world: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    """The host's cp sends a sparse file as its data alone (transfer/sparsewrite.py):
    the agent writes it whole, its holes as holes."""
    from boxlite_cli.transfer.tarwrite import tar_path

    root, _ = world
    src = tmp_path / "disk.img"
    with open(src, "wb") as f:
        f.write(b"head")
        f.seek(32 << 20)
        f.write(b"tail")
    tar_in(str(root), "/data", False, iter(rechunk(tar_path(str(src), "disk.img"))))
    copied = root / "data" / "disk.img"
    assert copied.stat().st_size == (32 << 20) + 4
    assert copied.stat().st_blocks * 512 < 1 << 20
    with open(copied, "rb") as f:
        assert f.read(4) == b"head" and f.seek(32 << 20) and f.read() == b"tail"


CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")  # (setcap cap_net_raw+ep)


def _capability_tar(value: bytes, name: str = "ping") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.uid, info.mode = 3, 1234, 0o755
        info.pax_headers = {"SCHILY.xattr.security.capability":
                            value.decode("utf-8", "surrogateescape")}
        tar.addfile(info, io.BytesIO(b"ELF"))
    return buf.getvalue()


@root_only
@pytest.mark.parametrize("keep_owner", [True, False])
def test_a_capability_copied_in_is_set_after_the_owner(world: tuple[Path, Path],
                                                       keep_owner: bool) -> None:
    """cp into a box keeps setcap's capability, as docker's cp (the chown that would
    clear it comes first), with -a or not."""
    root, _ = world
    tar_in(str(root), "/data", keep_owner, iter([_capability_tar(CAP_NET_RAW)]))
    target = root / "data" / "ping"
    try:
        got = os.getxattr(target, "security.capability")
    except OSError as e:
        if e.errno == errno.ENOTSUP:
            pytest.skip(f"no file capabilities on this file system: {e}")
        raise
    assert got == CAP_NET_RAW
    assert target.stat().st_uid == (1234 if keep_owner else 0)


@root_only
def test_a_capability_that_is_no_capability_fails_the_copy(world: tuple[Path, Path]) -> None:
    root, _ = world
    try:
        os.setxattr(root / "etc" / "passwd", "user.probe", b"1")
    except OSError as e:
        pytest.skip(f"no xattrs on this file system: {e}")
    with pytest.raises(FailedPrecondition, match="Invalid argument"):
        tar_in(str(root), "/data", False, iter([_capability_tar(b"junk")]))
    assert sorted(p.name for p in (root / "data").iterdir()) == ["abs_host", "to_etc", "up"]


def test_the_tree_is_each_entrys_metadata_without_its_data(tmp_path: Path) -> None:
    """boxlite diff's listing: a directory before what is in it, in name order, each
    entry's kind, mode, owner, size, time and link target; sockets left out."""
    import socket

    from boxlite_agent.pb import agent_pb2 as pb
    from boxlite_agent.treemeta import tree_chunks

    root = tmp_path / "root"
    (root / "b" / "c").mkdir(parents=True)
    (root / "a").write_bytes(b"12345")
    os.chmod(root / "a", 0o4750)
    os.utime(root / "a", (1000, 1000))
    (root / "b" / "link").symlink_to("../a")
    os.link(root / "a", root / "b" / "hard")
    os.mkfifo(root / "b" / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "b" / "sock"))
        entries = [e for chunk in tree_chunks(str(root)) for e in chunk.entries]
    assert [e.path for e in entries] == [b"a", b"b", b"b/c", b"b/fifo", b"b/hard", b"b/link"]
    a, b, _, fifo, hard, link = entries
    assert (a.kind, a.mode, a.size, a.mtime, a.uid) == (
        pb.TreeEntry.FILE, 0o4750, 5, 1000, os.getuid())
    assert (hard.kind, hard.size) == (pb.TreeEntry.FILE, 5)  # (a file again, not a link)
    assert (b.kind, fifo.kind) == (pb.TreeEntry.DIR, pb.TreeEntry.FIFO)
    assert (link.kind, link.link, link.size) == (pb.TreeEntry.SYMLINK, b"../a", 0)


def test_tar_paths_sends_each_path_by_itself(tmp_path: Path) -> None:
    """commit's fetch: a directory without what is in it, files with their data, a
    hard link to a file sent before as a link and to one not sent as the file; a path
    that is not there left out; `..` refused."""
    root = tmp_path / "root"
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"data")
    os.link(root / "d" / "f", root / "d" / "f2")
    os.link(root / "d" / "f", root / "d" / "f3")
    (root / "d" / "ln").symlink_to("f")
    data = b"".join(tar_paths(str(root), ["d", "d/f2", "d/f3", "gone", "d/ln"]))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile(members["d/f2"]).read() == b"data"  # type: ignore[union-attr]
    assert list(members) == ["d", "d/f2", "d/f3", "d/ln"]
    assert members["d"].isdir() and members["d/f2"].isfile()
    assert members["d/f3"].islnk() and members["d/f3"].linkname == "d/f2"
    assert members["d/ln"].issym() and members["d/ln"].linkname == "f"
    with pytest.raises(InvalidArgument):
        b"".join(tar_paths(str(root), ["d/../../etc"]))
