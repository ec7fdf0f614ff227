"""boxlite cp on the host: argument parsing, docker's placement rules, tar streams made
from host files, and extraction of hostile tar streams from a box."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import subprocess
import tarfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import boxlite_cli.runtime.copy as copy_module
from boxlite_cli.agent.client import PathInfo
from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.copy import (
    CopyOptions,
    CpArgs,
    Kind,
    Plan,
    box_link_followed,
    host_destination,
    host_source,
    parse_cp_args,
    plan_copy,
    split_box_arg,
    strip_path,
    wants_contents,
)
from boxlite_cli.transfer.extract import UnsafeArchive, extract_tar
from boxlite_cli.transfer.tarwrite import rechunk, tar_path

# arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(("arg", "expected"), [
    ("box:/etc", ("box", "/etc")),
    ("box:", ("box", "")),
    ("/abs/with:colon", (None, "/abs/with:colon")),
    ("./rel:colon", (None, "./rel:colon")),
    ("plain", (None, "plain")),
    ("-", (None, "-")),
    ("b:rel/path", ("b", "rel/path")),
])
def test_split_box_arg(arg: str, expected: tuple[str | None, str]) -> None:
    assert split_box_arg(arg) == expected


def test_parse_cp_args_directions() -> None:
    assert parse_cp_args("f", "b:/tmp/") == CpArgs("b", "/tmp/", "f", to_box=True)
    assert parse_cp_args("b:etc/x", "-") == CpArgs("b", "/etc/x", "-", to_box=False)
    assert parse_cp_args("-", "b:/d") == CpArgs("b", "/d", "-", to_box=True)


@pytest.mark.parametrize(("src", "dst", "needle"), [
    ("a:/x", "b:/y", "between boxes"),
    ("x", "y", "BOX:PATH"),
    ("-", "-", "BOX:PATH"),
    ("b:", "/tmp", "empty"),
    ("/tmp", "b:", "empty"),
    (":/x", "/tmp", "empty"),
    ("", "b:/x", "empty"),
    ("b:/x", "b2:-", "between boxes"),
])
def test_parse_cp_args_refusals(src: str, dst: str, needle: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_cp_args(src, dst)
    assert needle in e.value.message


def test_contents_and_strip() -> None:
    assert wants_contents("/d/.") and wants_contents(".") and not wants_contents("/d/")
    assert strip_path("/d/.") == "/d"
    assert strip_path("/d/") == "/d"
    assert strip_path("/") == "/"
    assert strip_path("/.") == "/"


# docker's placement rules -----------------------------------------------------------------


@pytest.mark.parametrize(("src", "src_kind", "dst", "dst_kind", "plan"), [
    # file → file / into a dir / new name
    ("/a/f", Kind.OTHER, "/b/g", Kind.OTHER, Plan("/b", "g")),
    ("/a/f", Kind.OTHER, "/b/g", Kind.MISSING, Plan("/b", "g")),
    ("/a/f", Kind.OTHER, "/b", Kind.DIR, Plan("/b", "f")),
    ("/a/f", Kind.OTHER, "/b/", Kind.DIR, Plan("/b", "f")),
    # dir → new dir (created with the contents), existing dir (inside it), SRC/.
    ("/a/d", Kind.DIR, "/b/new", Kind.MISSING, Plan("/b", "new")),
    ("/a/d", Kind.DIR, "/b", Kind.DIR, Plan("/b", "d")),
    ("/a/d/.", Kind.DIR, "/b", Kind.DIR, Plan("/b", "")),
    ("/a/d/.", Kind.DIR, "/b/new", Kind.MISSING, Plan("/b", "new")),
    ("/a/d/", Kind.DIR, "/b", Kind.DIR, Plan("/b", "d")),
    ("rel", Kind.OTHER, "out", Kind.MISSING, Plan(".", "out")),
])
def test_plan_copy(src: str, src_kind: Kind, dst: str, dst_kind: Kind, plan: Plan) -> None:
    base = os.path.basename(strip_path(src))
    assert plan_copy(src, src_kind, dst, dst_kind, base) == plan


@pytest.mark.parametrize(("src", "src_kind", "dst", "dst_kind", "needle"), [
    ("/a/d", Kind.DIR, "/b/file", Kind.OTHER, "cannot copy a directory to a file"),
    ("/a/f/", Kind.OTHER, "/b", Kind.DIR, "not a directory"),
    ("/a/f", Kind.OTHER, "/b/missing/", Kind.MISSING, "does not exist"),
    ("/a/f", Kind.OTHER, "/b/file/", Kind.OTHER, "not a directory"),
    ("/a/x", Kind.MISSING, "/b", Kind.DIR, "no such file"),
])
def test_plan_copy_refusals(src: str, src_kind: Kind, dst: str, dst_kind: Kind,
                            needle: str) -> None:
    with pytest.raises(UsageError) as e:
        plan_copy(src, src_kind, dst, dst_kind, "x")
    assert needle in e.value.message


def test_host_destination_needs_a_parent(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        host_destination(str(tmp_path / "no" / "such"))
    assert host_destination(str(tmp_path / "new"))[1] is Kind.MISSING
    assert host_destination(str(tmp_path))[1] is Kind.DIR


def test_host_source_symlinks(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "l").symlink_to("d")
    assert host_source(str(tmp_path / "l"), follow=False)[1] is Kind.OTHER
    assert host_source(str(tmp_path / "l"), follow=True)[1] is Kind.DIR
    assert host_source(str(tmp_path / "l") + "/", follow=False)[1] is Kind.DIR
    assert host_source(str(tmp_path / "l") + "/.", follow=False)[1] is Kind.DIR  # (docker's)


class _LinksInABox:
    """An agent client whose box has these symlinks (path: target) and nothing else."""

    def __init__(self, links: dict[str, str]) -> None:
        self.links = links

    def stat(self, path: str, follow_link: bool = False) -> PathInfo:
        assert not follow_link
        if path in self.links:
            return PathInfo(True, stat.S_IFLNK | 0o777, 0, self.links[path], path)
        return PathInfo(False, 0, 0, "", path)


def test_a_box_destination_that_is_a_symlink_stands_for_its_target() -> None:
    """docker's cp evaluates a destination link: the copy lands on the target (made if
    missing), the link stays."""
    client: Any = _LinksInABox({"/tmp/flink": "/root/target", "/etc/localtime": "../usr/tz",
                                "/a": "b", "/b": "/c", "/loop": "/loop"})
    assert box_link_followed(client, "/tmp/flink") == "/root/target"
    assert box_link_followed(client, "/etc/localtime") == "/usr/tz"  # (relative: its dir's)
    assert box_link_followed(client, "/a") == "/c"  # (a chain: to its end)
    assert box_link_followed(client, "/loop") == "/loop"  # (a loop: left to fail there)
    assert box_link_followed(client, "/tmp/flink/") == "/tmp/flink/"  # (`/` resolves it)
    assert box_link_followed(client, "/plain") == "/plain"


# tar streams from host files --------------------------------------------------------------


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar}


def test_tar_path_names_modes_links(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"x" * 1000)
    (src / "sub" / "f").chmod(0o751)
    os.link(src / "sub" / "f", src / "hard")
    (src / "link").symlink_to("/etc/passwd")
    data = b"".join(tar_path(str(src), "top"))
    m = _members(data)
    assert set(m) == {"top", "top/sub", "top/sub/f", "top/hard", "top/link"}
    # sorted walk: "hard" comes first and carries the data; the other name links to it
    assert m["top/hard"].size == 1000 and m["top/hard"].mode == 0o751
    assert m["top/sub/f"].islnk() and m["top/sub/f"].linkname == "top/hard"
    assert m["top/link"].issym() and m["top/link"].linkname == "/etc/passwd"
    contents = _members(b"".join(tar_path(str(src), "")))
    assert "sub/f" in contents and "" not in contents


def test_a_file_that_shrinks_while_it_is_copied_fails_the_copy(tmp_path: Path) -> None:
    """It was padded with zeros, exit 0 (tester AS); docker's fails."""
    from boxlite_cli.errors import Conflict

    src = tmp_path / "log"
    src.write_bytes(b"x" * (3 << 20))
    pieces = tar_path(str(src), "log")
    next(pieces), next(pieces)  # (its header, its first MiB)
    os.truncate(src, 1 << 20)
    with pytest.raises(Conflict, match=f"cp: {src} shrank by {2 << 20} bytes while it was "
                                       "copied"):
        list(pieces)


def test_a_sparse_file_goes_as_its_data_alone(tmp_path: Path) -> None:
    """Into a box, a sparse file's holes do not cross (a 2 GiB one took 3.5 minutes:
    tester AT): a GNU sparse member, which tarfile (the agent's) reads back whole."""
    src = tmp_path / "disk.img"
    head = os.urandom(1 << 20)
    with open(src, "wb") as f:
        f.write(head)
        f.seek(64 << 20)
        f.write(b"end")
    data = b"".join(tar_path(str(src), "disk.img"))
    assert len(data) < 2 << 20  # (not the 64 MiB of its holes)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        assert member is not None and member.sparse is not None
        assert member.size == (64 << 20) + 3
        copy = tar.extractfile(member)
        assert copy is not None and copy.read() == head + bytes(63 << 20) + b"end"
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(4096))
    assert _members(b"".join(tar_path(str(plain), "plain")))["plain"].sparse is None


def test_tar_path_carries_a_files_capability(tmp_path: Path) -> None:
    """setcap's security.capability goes into the box with the file (docker's tars)."""
    src = tmp_path / "ping"
    src.write_bytes(b"ELF")
    value = bytes.fromhex("0100000200200000000000000000000000000000")
    try:
        os.setxattr(src, "security.capability", value)
    except OSError as e:
        pytest.skip(f"setting a file capability needs root (CAP_SETFCAP) and xattrs: {e}")
    member = _members(b"".join(tar_path(str(src), "ping")))["ping"]
    assert member.pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == value
    (tmp_path / "plain").write_bytes(b"x")
    plain = _members(b"".join(tar_path(str(tmp_path / "plain"), "plain")))["plain"]
    assert "SCHILY.xattr.security.capability" not in plain.pax_headers


def test_rechunk_bounds_messages() -> None:
    pieces = [b"a" * 100] * 50 + [b"b" * 5000] + [b"c"]
    out = list(rechunk(iter(pieces), size=1024))
    assert b"".join(out) == b"".join(pieces)
    assert all(len(c) <= 2 * 5000 for c in out)


# extracting hostile streams ---------------------------------------------------------------


def _tar(*entries: tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tuple):
                info, data = entry
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(entry)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
          ) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def _chunks(data: bytes, size: int = 700) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.fixture
def area(tmp_path: Path) -> tuple[Path, Path]:
    """(destination, a sibling that must stay untouched)."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "keep").write_text("keep")
    return dest, outside


def _untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["keep"]
    assert (outside / "keep").read_text() == "keep"


def test_extract_round_trip(tmp_path: Path, area: tuple[Path, Path]) -> None:
    dest, _ = area
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(3000))
    (src / "d").chmod(0o555)
    (src / "l").symlink_to("d/f")
    result = extract_tar(rechunk(tar_path(str(src), "copy"), 1024), str(dest))
    assert (dest / "copy" / "d" / "f").read_bytes() == (src / "d" / "f").read_bytes()
    assert stat.S_IMODE((dest / "copy" / "d").stat().st_mode) == 0o555
    assert os.readlink(dest / "copy" / "l") == "d/f"
    assert result.entries == 4
    (src / "d").chmod(0o755)
    (dest / "copy" / "d").chmod(0o755)


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "x/../../../outside/keep"])
def test_extract_refuses_dotdot(area: tuple[Path, Path], name: str) -> None:
    dest, outside = area
    with pytest.raises(UnsafeArchive, match=r"'\.\.'"):
        extract_tar(_chunks(_tar((_info(name), b"evil"))), str(dest))
    _untouched(outside)


@pytest.mark.parametrize("name", [".bashrc", ".ssh/authorized_keys", "reportXtxt/x", "."])
def test_a_copy_of_one_entry_takes_nothing_beside_it(area: tuple[Path, Path], name: str) -> None:
    """The box makes the stream: asked for report.txt it may not write ~/.bashrc, or
    replace a file, beside it in the destination."""
    dest, _ = area
    (dest / ".bashrc").write_text("mine")
    stream = _tar((_info("report.txt"), b"asked for"), (_info(name), b"evil"))
    with pytest.raises(UnsafeArchive, match=r"the copy asked for 'report\.txt' only"):
        extract_tar(_chunks(stream), str(dest), top="report.txt")
    assert (dest / ".bashrc").read_text() == "mine"
    assert sorted(p.name for p in dest.iterdir()) == [".bashrc", "report.txt"]
    # what is below the entry asked for is taken
    tree = _tar(_info("copy", tarfile.DIRTYPE, mode=0o755), (_info("copy/sub/f"), b"ok"))
    extract_tar(_chunks(tree), str(dest), top="copy")
    assert (dest / "copy" / "sub" / "f").read_bytes() == b"ok"


def test_a_copy_removes_the_partial_files_killed_copies_left_in_its_directory(
        area: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """(a `cp BOX:FILE DIR/` killed with SIGKILL left its hidden partial file there for
    good); one a copy still writes (locked) stays."""
    import fcntl

    from boxlite_cli.transfer import extract

    monkeypatch.setattr(extract, "PARTIAL_STALE_S", 0.0)
    dest, _ = area
    (dest / ".boxlite-cp-0123456789abcdef").write_bytes(b"left by a killed copy")
    (dest / ".boxlite-cp-other").write_bytes(b"not one of ours")
    live = dest / ".boxlite-cp-fedcba9876543210"
    live.write_bytes(b"being written")
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        extract_tar(_chunks(_tar((_info("report.txt"), b"new"))), str(dest))
    assert sorted(p.name for p in dest.iterdir()) == [
        ".boxlite-cp-fedcba9876543210", ".boxlite-cp-other", "report.txt"]
    monkeypatch.setattr(extract, "PARTIAL_STALE_S", 3600.0)  # (a young one: perhaps not
    young = dest / ".boxlite-cp-00000000000000aa"               # locked yet by its copy)
    young.write_bytes(b"")
    extract_tar(_chunks(_tar((_info("again.txt"), b"x"))), str(dest))
    assert young.exists()


def test_extract_confines_absolute_names(area: tuple[Path, Path]) -> None:
    dest, outside = area
    extract_tar(_chunks(_tar((_info(str(outside / "keep")), b"evil"))), str(dest))
    _untouched(outside)
    assert (dest / str(outside / "keep").lstrip("/")).read_bytes() == b"evil"


@pytest.mark.parametrize("target", ["/", "..", "../outside", "/etc"])
def test_extract_never_writes_through_a_symlink(area: tuple[Path, Path], target: str) -> None:
    dest, outside = area
    stream = _tar(_info("link", tarfile.SYMTYPE, target), (_info("link/keep"), b"evil"))
    with pytest.raises(UnsafeArchive, match="symlink"):
        extract_tar(_chunks(stream), str(dest))
    _untouched(outside)
    assert os.readlink(dest / "link") == target  # made as is, never followed


def test_extract_never_writes_through_a_planted_file_symlink(area: tuple[Path, Path]) -> None:
    dest, outside = area
    stream = _tar(_info("f", tarfile.SYMTYPE, str(outside / "keep")), (_info("f"), b"evil"))
    extract_tar(_chunks(stream), str(dest))
    _untouched(outside)
    assert (dest / "f").read_bytes() == b"evil" and not (dest / "f").is_symlink()


def test_extract_existing_symlink_in_destination_is_not_followed(area: tuple[Path, Path]) -> None:
    dest, outside = area
    (dest / "sub").symlink_to(outside)
    with pytest.raises(UnsafeArchive):
        extract_tar(_chunks(_tar((_info("sub/new"), b"evil"))), str(dest))
    _untouched(outside)


@pytest.mark.parametrize("link", ["../outside/keep", "/etc/passwd", "missing"])
def test_extract_refuses_hard_links_out(area: tuple[Path, Path], link: str) -> None:
    dest, outside = area
    with pytest.raises(UnsafeArchive):
        extract_tar(_chunks(_tar(_info("hl", tarfile.LNKTYPE, link))), str(dest))
    _untouched(outside)
    assert not (dest / "hl").exists()


def test_extract_hard_link_to_own_file(area: tuple[Path, Path]) -> None:
    dest, _ = area
    extract_tar(_chunks(_tar((_info("f"), b"data"), _info("h", tarfile.LNKTYPE, "f"))), str(dest))
    assert (dest / "f").stat().st_ino == (dest / "h").stat().st_ino


def test_extract_skips_devices(area: tuple[Path, Path]) -> None:
    dest, _ = area
    dev = _info("sda", tarfile.BLKTYPE)
    dev.devmajor, dev.devminor = 8, 0
    warnings: list[str] = []
    result = extract_tar(_chunks(_tar(dev, _info("null", tarfile.CHRTYPE), (_info("ok"), b"1"))),
                         str(dest), warn=warnings.append)
    assert sorted(p.name for p in dest.iterdir()) == ["ok"]
    assert result.skipped == ["sda", "null"] and len(warnings) == 2


def test_extract_dir_file_conflicts(area: tuple[Path, Path]) -> None:
    dest, _ = area
    (dest / "d").mkdir()
    with pytest.raises(UnsafeArchive, match="cannot overwrite directory"):
        extract_tar(_chunks(_tar((_info("d"), b"x"))), str(dest))
    (dest / "f").write_text("x")
    with pytest.raises(UnsafeArchive, match="cannot overwrite non-directory"):
        extract_tar(_chunks(_tar(_info("f", tarfile.DIRTYPE))), str(dest))


def test_extract_keeps_setuid_only_for_an_owner_kept_that_is_ours(area: tuple[Path, Path]) -> None:
    dest, _ = area
    info = _info("suid", mode=0o4755)
    info.uid = os.geteuid() + 1
    extract_tar(_chunks(_tar((info, b"#!"))), str(dest), keep_owner=True)
    assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o755
    extract_tar(_chunks(_tar((_info("own", mode=0o4755), b"#!"))), str(dest), keep_owner=True)
    assert stat.S_IMODE((dest / "own").stat().st_mode) == 0o4755  # -a, and ours: kept
    # without -a the file becomes the caller's: a box must not plant a set-uid file
    extract_tar(_chunks(_tar((_info("plain", mode=0o6755), b"#!"))), str(dest))
    assert stat.S_IMODE((dest / "plain").stat().st_mode) == 0o755


def test_extract_keeps_a_capability_as_it_keeps_setuid(area: tuple[Path, Path]) -> None:
    """setcap's security.capability: kept with -a and an owner that is ours (cp -a said
    it went with the file, and it was dropped), never without -a or for another owner."""
    if os.geteuid() != 0:
        pytest.skip("setting a file capability needs root (CAP_SETFCAP)")
    dest, _ = area
    cap = "\x01\x00\x00\x02\x00\x04" + "\x00" * 14  # (cap_setuid, permitted)

    def capped(name: str, uid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
        info = _info(name, mode=0o755)
        info.uid, info.gid = uid, os.getegid()
        info.pax_headers = {"SCHILY.xattr.security.capability": cap}
        return info, b"ELF"

    extract_tar(_chunks(_tar(capped("kept"), capped("theirs", os.geteuid() + 1))), str(dest),
                keep_owner=True)
    assert os.getxattr(dest / "kept", "security.capability") == cap.encode("latin-1")
    extract_tar(_chunks(_tar(capped("plain"))), str(dest))
    for dropped in ("theirs", "plain"):
        assert "security.capability" not in os.listxattr(dest / dropped), dropped


def test_extract_cut_short_leaves_the_old_file(area: tuple[Path, Path]) -> None:
    dest, _ = area
    (dest / "f").write_bytes(b"old")
    data = os.urandom(100_000)
    stream = _tar((_info("f"), data))
    with pytest.raises(UnsafeArchive, match="malformed"):
        extract_tar(_chunks(stream[:50_000]), str(dest))  # the box went away mid-file
    assert [p.name for p in dest.iterdir()] == ["f"]  # no temporary file left either
    assert (dest / "f").read_bytes() == b"old"

    def interrupted() -> Iterator[bytes]:
        yield from _chunks(stream[:50_000])
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        extract_tar(interrupted(), str(dest))
    assert [p.name for p in dest.iterdir()] == ["f"]
    assert (dest / "f").read_bytes() == b"old"
    extract_tar(_chunks(stream), str(dest))  # a whole one replaces it
    assert (dest / "f").read_bytes() == data


def test_extract_malformed_stream(area: tuple[Path, Path]) -> None:
    dest, _ = area
    with pytest.raises(UnsafeArchive, match="malformed"):
        extract_tar(iter([b"not a tar" * 100]), str(dest))


def test_a_tree_deeper_than_the_recursion_limit_is_copied(tmp_path: Path) -> None:
    """docker copies them; a recursive walk failed with RecursionError at ~1000 levels."""
    import sys

    from boxlite_cli.transfer.extract import extract_tar
    from boxlite_cli.transfer.tarwrite import tar_path

    depth = sys.getrecursionlimit() + 200
    src = tmp_path / "src"
    src.mkdir()
    fd = os.open(src, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"bottom")
        os.close(leaf)
    finally:
        os.close(fd)
    dest = tmp_path / "dest"
    dest.mkdir()
    try:
        extract_tar(iter(list(tar_path(str(src), "src"))), str(dest))
        assert (dest / "src" / Path(*["d"] * depth) / "leaf").read_bytes() == b"bottom"
    finally:  # (pytest's own clean-up of tmp_path would recurse too deep)
        subprocess.run(["rm", "-rf", str(src), str(dest)], check=True)


class _OneFileAgent:
    """A box's agent that has /report.txt (what `cp BOX:/report.txt DST` asks it)."""

    def stat(self, path: str, follow_link: bool = False) -> object:
        return types.SimpleNamespace(exists=True, mode=0o100644, name="report.txt")

    def copy_out(self, src: str, follow: bool, name: str, sparse: bool = False
                 ) -> Iterator[bytes]:
        yield _tar((_info(name), b"from the box\n"))


@pytest.fixture
def one_file_box(monkeypatch: pytest.MonkeyPatch) -> None:
    @contextlib.contextmanager
    def agent(rt: object, ref: str) -> Iterator[_OneFileAgent]:
        yield _OneFileAgent()

    monkeypatch.setattr(copy_module, "box_agent", agent)


def test_a_destination_that_is_the_users_own_link_is_followed(tmp_path: Path,
                                                              one_file_box: None) -> None:
    """docker's: the link stays, the file it points to gets the copy."""
    (tmp_path / "real").write_text("old")
    (tmp_path / "link").symlink_to("real")
    copy_module.copy_from_box(None, parse_cp_args("box:/report.txt", str(tmp_path / "link")),
                              CopyOptions(), warn=print)  # type: ignore[arg-type]
    assert os.readlink(tmp_path / "link") == "real"
    assert (tmp_path / "real").read_text() == "from the box\n"


@pytest.mark.parametrize("kind", ["fifo", "link-to-device"])
def test_a_destination_that_is_no_file_is_refused(tmp_path: Path, one_file_box: None,
                                                  kind: str) -> None:
    """A copy would replace it by a file (`cp box:/f /dev/stdout` made /dev/stdout one)."""
    dest = tmp_path / "dest"
    if kind == "fifo":
        os.mkfifo(dest)
    else:
        dest.symlink_to("/dev/null")
    with pytest.raises(UsageError, match=r"is not a regular file or a directory") as refused:
        copy_module.copy_from_box(None, parse_cp_args("box:/report.txt", str(dest)),
                                  CopyOptions(), warn=print)  # type: ignore[arg-type]
    assert refused.value.hint and "give - as the destination" in refused.value.hint
    assert os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode)
