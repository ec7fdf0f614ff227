"""Applying OCI layer tars: whiteouts, links, metadata, and no way out of the target.

Every layer here is a real tar stream built with `tarfile`. The escape tests keep a
directory with a sentinel file next to the target and check, byte for byte, that
nothing outside the target changed.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import stat
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard

from boxlite_cli.disks.ownership import Ownership, Wanted
from boxlite_cli.errors import ImageError
from boxlite_cli.oci.safepath import clean_member_name, resolve_in_root
from boxlite_cli.oci.unpack import apply_layer, make_volume_dirs

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="changing owners needs root")


# building layers -----------------------------------------------------------------------

@dataclass
class Member:
    info: tarfile.TarInfo
    data: bytes | None = None


@dataclass
class Sandbox:
    """A target directory with a watched neighbour directory next to it."""

    base: Path
    root: Path = field(init=False)
    outside: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.base / "root"
        self.outside = self.base / "outside"
        self.root.mkdir(parents=True)
        self.outside.mkdir()
        (self.outside / "sentinel").write_text("keep me\n")
        (self.outside / "dir").mkdir()
        (self.outside / "dir" / "inner").write_text("inner\n")

    def snapshot_outside(self) -> dict[str, tuple[int, bytes]]:
        """Every path under `base` except the target: its mode and content."""
        seen: dict[str, tuple[int, bytes]] = {}
        for dirpath, dirnames, filenames in os.walk(self.base):
            here = Path(dirpath)
            if here == self.root:
                dirnames[:] = []
                continue
            for name in dirnames + filenames:
                p = here / name
                if p == self.root:
                    continue
                st = p.lstat()
                content = p.read_bytes() if stat.S_ISREG(st.st_mode) else b""
                seen[str(p.relative_to(self.base))] = (st.st_mode, content)
        return seen


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = Sandbox(tmp_path / "sandbox")
    before = sandbox.snapshot_outside()
    yield sandbox
    # Whatever a test did, nothing next to the target may have changed.
    assert sandbox.snapshot_outside() == before


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, mtime: int = 1_600_000_000,
          pax: dict[str, str] | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = mtime
    if pax:
        info.pax_headers = dict(pax)
    return info


def reg(name: str, data: bytes = b"", mode: int = 0o644, **kw: object) -> Member:
    info = _info(name, tarfile.REGTYPE, mode, **kw)  # type: ignore[arg-type]
    info.size = len(data)
    return Member(info, data)


def dir_(name: str, mode: int = 0o755, **kw: object) -> Member:
    return Member(_info(name, tarfile.DIRTYPE, mode, **kw))  # type: ignore[arg-type]


def sym(name: str, target: str, **kw: object) -> Member:
    info = _info(name, tarfile.SYMTYPE, 0o777, **kw)  # type: ignore[arg-type]
    info.linkname = target
    return Member(info)


def hard(name: str, target: str) -> Member:
    info = _info(name, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return Member(info)


def fifo(name: str, mode: int = 0o600) -> Member:
    return Member(_info(name, tarfile.FIFOTYPE, mode))


def whiteout(path: str) -> Member:
    parent, _, base = path.rpartition("/")
    return reg(f"{parent}/.wh.{base}" if parent else f".wh.{base}")


def opaque(directory: str) -> Member:
    return reg(f"{directory.rstrip('/')}/.wh..wh..opq")


def layer(*members: Member, compress: bool = False) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            tar.addfile(m.info, io.BytesIO(m.data) if m.data is not None else None)
    raw = buf.getvalue()
    return io.BytesIO(gzip.compress(raw) if compress else raw)


def apply(root: Path, *members: Member) -> None:
    apply_layer(layer(*members), root)


def tree(root: Path) -> dict[str, str]:
    """A readable picture of a tree: path → 'dir', 'file:<content>' or 'link:<target>'."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = f"link:{os.readlink(p)}"
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = f"file:{p.read_text(errors='replace')}"
    return out


# layers that work -------------------------------------------------------------------------

def test_files_dirs_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    apply(root, dir_("etc"), reg("etc/hostname", b"box\n"), sym("etc/abs", "/etc/hostname"),
          sym("etc/dangling", "../nowhere"), reg("./usr/./bin/tool", b"#!/bin/sh\n", 0o755))
    assert tree(root) == {
        "etc": "dir", "usr": "dir",
        "etc/hostname": "file:box\n",
        "etc/abs": "link:/etc/hostname",
        "etc/dangling": "link:../nowhere",
        "usr/bin": "dir",
        "usr/bin/tool": "file:#!/bin/sh\n",
    }


def test_gzip_compressed_layer(tmp_path: Path) -> None:
    apply_layer(layer(reg("a", b"zipped"), compress=True), tmp_path)
    assert (tmp_path / "a").read_bytes() == b"zipped"


def test_zstd_compressed_layer(tmp_path: Path) -> None:
    raw = layer(reg("a", b"zstd"), dir_("d"), reg("d/b", os.urandom(300_000))).getvalue()
    apply_layer(io.BytesIO(zstandard.ZstdCompressor().compress(raw)), tmp_path)
    assert (tmp_path / "a").read_bytes() == b"zstd"
    assert (tmp_path / "d/b").stat().st_size == 300_000


def test_zstd_layer_of_several_frames(tmp_path: Path) -> None:
    raw = layer(reg("a", b"one"), reg("b", os.urandom(100_000))).getvalue()
    c = zstandard.ZstdCompressor()
    apply_layer(io.BytesIO(c.compress(raw[:5000]) + c.compress(raw[5000:])), tmp_path)
    assert (tmp_path / "a").read_bytes() == b"one"
    assert (tmp_path / "b").stat().st_size == 100_000


def test_uncompressed_layer_whatever_its_name_says(tmp_path: Path) -> None:
    apply_layer(layer(reg("plain", b"tar")), tmp_path)
    assert (tmp_path / "plain").read_bytes() == b"tar"


@pytest.mark.parametrize("compress", [gzip.compress, lambda b: zstandard.ZstdCompressor().compress(b)])
def test_truncated_compressed_layer_is_an_image_error(tmp_path: Path, compress: object) -> None:
    data = compress(layer(reg("big", os.urandom(200_000))).getvalue())  # type: ignore[operator]
    with pytest.raises(ImageError):
        apply_layer(io.BytesIO(data[: len(data) - 100]), tmp_path)


def test_corrupt_zstd_layer_is_an_image_error(tmp_path: Path) -> None:
    compressor = zstandard.ZstdCompressor(write_checksum=True)
    data = bytearray(compressor.compress(layer(reg("a", b"abc" * 50_000)).getvalue()))
    data[-2] ^= 0xFF  # the content checksum
    with pytest.raises(ImageError):
        apply_layer(io.BytesIO(bytes(data)), tmp_path)


def test_later_layer_replaces_content_and_kind(tmp_path: Path) -> None:
    apply(tmp_path, reg("f", b"one"), dir_("d"), reg("d/x", b"x"), sym("l", "f"))
    apply(tmp_path, reg("f", b"two"), reg("d", b"now a file"), dir_("l"))
    assert tree(tmp_path) == {"f": "file:two", "d": "file:now a file", "l": "dir"}


def test_whiteout_removes_lower_file_and_directory(tmp_path: Path) -> None:
    apply(tmp_path, dir_("etc"), reg("etc/keep", b"k"), reg("etc/gone", b"g"),
          dir_("var"), dir_("var/cache"), reg("var/cache/big", b"b"), sym("etc/link", "keep"))
    apply(tmp_path, whiteout("etc/gone"), whiteout("var/cache"), whiteout("etc/link"))
    assert tree(tmp_path) == {"etc": "dir", "var": "dir", "etc/keep": "file:k"}


def test_whiteout_of_missing_path_is_harmless(tmp_path: Path) -> None:
    apply(tmp_path, reg("a", b"a"))
    apply(tmp_path, whiteout("nothing"), whiteout("no/such/dir/file"))
    assert (tmp_path / "a").read_bytes() == b"a"


def test_opaque_directory_hides_lower_layers(tmp_path: Path) -> None:
    apply(tmp_path, dir_("app"), reg("app/old", b"o"), dir_("app/sub"), reg("app/sub/deep", b"d"),
          reg("other", b"untouched"))
    apply(tmp_path, dir_("app"), opaque("app"), reg("app/new", b"n"))
    assert tree(tmp_path) == {"app": "dir", "other": "file:untouched", "app/new": "file:n"}


def test_opaque_whiteout_spares_entries_of_its_own_layer(tmp_path: Path) -> None:
    # OCI image spec: whiteouts apply to lower layers only; docker and containerd keep
    # the entries of the same layer whatever their order in the tar.
    apply(tmp_path, dir_("app"), reg("app/old", b"o"))
    apply(tmp_path, dir_("app"), reg("app/new", b"n"), dir_("app/sub"), reg("app/sub/f", b"f"),
          opaque("app"))
    assert tree(tmp_path) == {"app": "dir", "app/new": "file:n", "app/sub": "dir",
                              "app/sub/f": "file:f"}


def test_hard_links_share_the_inode(tmp_path: Path) -> None:
    apply(tmp_path, dir_("bin"), reg("bin/busybox", b"bb", 0o755))
    apply(tmp_path, hard("bin/sh", "bin/busybox"), hard("bin/ls", "/bin/busybox"),
          reg("bin/new", b"n"), hard("bin/new2", "bin/new"))
    busybox = (tmp_path / "bin/busybox").stat()
    assert (tmp_path / "bin/sh").stat().st_ino == busybox.st_ino
    assert (tmp_path / "bin/ls").stat().st_ino == busybox.st_ino
    assert busybox.st_nlink == 3
    assert (tmp_path / "bin/new2").stat().st_ino == (tmp_path / "bin/new").stat().st_ino


def test_hard_link_to_missing_target_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="missing"):
        apply(tmp_path, hard("a", "no/such/file"))


def test_modes_including_special_bits(tmp_path: Path) -> None:
    apply(tmp_path, reg("suid", b"x", 0o4755), reg("secret", b"s", 0o600),
          reg("sgid", b"g", 0o2711), dir_("sticky", 0o1777), dir_("private", 0o700),
          dir_("ro", 0o555), reg("ro/inside", b"written after its parent became read-only", 0o444),
          fifo("pipe", 0o640))
    modes = {name: stat.S_IMODE((tmp_path / name).lstat().st_mode)
             for name in ("suid", "secret", "sgid", "sticky", "private", "ro", "ro/inside", "pipe")}
    assert modes == {"suid": 0o4755, "secret": 0o600, "sgid": 0o2711, "sticky": 0o1777,
                     "private": 0o700, "ro": 0o555, "ro/inside": 0o444, "pipe": 0o640}
    assert stat.S_ISFIFO((tmp_path / "pipe").lstat().st_mode)


@needs_root
def test_owners_of_files_dirs_and_symlinks(tmp_path: Path) -> None:
    apply(tmp_path, dir_("home", uid=1000, gid=1000), reg("home/f", b"f", uid=1000, gid=2000),
          sym("home/l", "f", uid=3000, gid=4000), reg("setuid", b"s", 0o4755, uid=1000, gid=0))
    owners = {name: ((tmp_path / name).lstat().st_uid, (tmp_path / name).lstat().st_gid)
              for name in ("home", "home/f", "home/l", "setuid")}
    assert owners == {"home": (1000, 1000), "home/f": (1000, 2000), "home/l": (3000, 4000),
                      "setuid": (1000, 0)}
    # chown clears set-id bits, so the mode must be applied after the owner.
    assert stat.S_IMODE((tmp_path / "setuid").stat().st_mode) == 0o4755


def test_mtimes_of_files_and_directories(tmp_path: Path) -> None:
    apply(tmp_path, dir_("d", mtime=1_500_000_000), reg("d/f", b"f", mtime=1_400_000_000),
          sym("d/l", "f", mtime=1_300_000_000))
    assert (tmp_path / "d/f").stat().st_mtime == 1_400_000_000
    assert (tmp_path / "d/l").lstat().st_mtime == 1_300_000_000
    # The directory's time is set after its children were written into it.
    assert (tmp_path / "d").stat().st_mtime == 1_500_000_000


def _xattr_problem(directory: Path) -> str | None:
    probe = directory / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.boxlite.probe", b"1")
    except OSError as e:
        return f"user.* xattrs are not supported on {directory}: {e.strerror}"
    finally:
        probe.unlink()
    return None


def test_xattrs_from_pax_headers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    problem = _xattr_problem(root)
    if problem:
        pytest.skip(problem)
    apply(root, reg("bin/ping", b"p", 0o755, pax={
        "SCHILY.xattr.user.mime_type": "application/x-executable",
        "SCHILY.xattr.user.caf\u00e9": "cr\u00e8me",
    }), dir_("d", pax={"SCHILY.xattr.user.dirattr": "yes"}))
    assert os.getxattr(root / "bin/ping", "user.mime_type") == b"application/x-executable"
    assert os.getxattr(root / "bin/ping", "user.caf\u00e9") == "cr\u00e8me".encode()
    assert os.getxattr(root / "d", "user.dirattr") == b"yes"


def test_garbage_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError):
        apply_layer(io.BytesIO(b"this is not a tar archive at all" * 40), tmp_path)


def test_truncated_layer_is_an_image_error(tmp_path: Path) -> None:
    data = layer(reg("big", os.urandom(100_000))).getvalue()
    with pytest.raises(ImageError):
        apply_layer(io.BytesIO(data[:50_000]), tmp_path)


def test_member_below_a_regular_file_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError):
        apply(tmp_path, reg("f", b"a file"), reg("f/child", b"cannot be"))


# escapes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../x", "../outside/sentinel", "a/../../x", "a/b/../../../x",
                                  "..", "./../x"])
def test_dotdot_member_names_are_refused(box: Sandbox, name: str) -> None:
    with pytest.raises(ImageError, match="traversal"):
        apply(box.root, reg(name, b"pwned"))


@pytest.mark.parametrize("make", [
    lambda n: sym(n, "/etc"),
    lambda n: hard(n, "x"),
    dir_,
])
def test_dotdot_names_of_every_member_type_are_refused(box: Sandbox, make: object) -> None:
    with pytest.raises(ImageError):
        apply(box.root, reg("x"), make("../outside/new"))  # type: ignore[operator]


def test_absolute_member_names_land_inside(box: Sandbox) -> None:
    host_path = Path("/tmp") / f"boxlite-escape-{uuid.uuid4().hex}"
    apply(box.root, reg(str(host_path), b"confined"), reg(str(box.outside / "sentinel"), b"x"))
    assert not host_path.exists()
    assert (box.root / str(host_path).lstrip("/")).read_bytes() == b"confined"
    assert (box.root / str(box.outside / "sentinel").lstrip("/")).read_bytes() == b"x"


# Where a symlink in the root points, and where (inside the root) it must lead.
SYMLINK_TARGETS = {
    "/": "", "/..": "", "..": "", "../..": "", "../../../../..": "", "a/../..": "",
    "../outside": "outside", "/../outside/dir": "outside/dir",
}


@pytest.mark.parametrize("target", sorted(SYMLINK_TARGETS))
def test_symlinked_parent_cannot_lead_out(box: Sandbox, target: str) -> None:
    marker = f"boxlite-escape-{uuid.uuid4().hex}"
    apply(box.root, sym("evil", target))
    apply(box.root, reg(f"evil/{marker}", b"pwned"), dir_(f"evil/{marker}.d", 0o700),
          reg(f"evil/{marker}.d/inner", b"pwned"), reg("evil/sentinel", b"pwned"))
    inside = box.root / SYMLINK_TARGETS[target]
    assert (inside / marker).read_bytes() == b"pwned"
    assert (inside / f"{marker}.d" / "inner").read_bytes() == b"pwned"
    assert (inside / "sentinel").read_bytes() == b"pwned"
    for d in (Path("/"), Path("/tmp"), box.base, box.base.parent, box.outside, box.outside / "dir"):
        assert not (d / marker).exists(), f"escaped to {d}"


def test_absolute_symlink_to_the_host_path_of_a_neighbour(box: Sandbox) -> None:
    apply(box.root, sym("evil", str(box.outside)))
    apply(box.root, reg("evil/sentinel", b"pwned"), reg("evil/dir/inner", b"pwned"))
    inside = box.root / str(box.outside).lstrip("/")
    assert (inside / "sentinel").read_bytes() == b"pwned"
    assert (inside / "dir" / "inner").read_bytes() == b"pwned"


def test_symlinked_parent_through_several_hops(box: Sandbox) -> None:
    apply(box.root, dir_("a"), sym("a/up", ".."), sym("b", "a/up/a/up/../../.."),
          sym("c", "b/a/up/../outside"))
    apply(box.root, reg("b/outside/sentinel", b"pwned"), reg("c/dir/inner", b"pwned"))
    assert (box.root / "outside" / "sentinel").read_bytes() == b"pwned"
    assert (box.root / "outside" / "dir" / "inner").read_bytes() == b"pwned"
    assert not (box.base.parent / "outside").exists()


def test_final_symlink_is_replaced_not_followed(box: Sandbox) -> None:
    apply(box.root, sym("f", str(box.outside / "sentinel")), sym("d", str(box.outside / "dir")),
          sym("rel", "../outside/sentinel"))
    apply(box.root, reg("f", b"new content", 0o777), dir_("d", 0o777), reg("rel", b"new"))
    assert (box.root / "f").read_bytes() == b"new content"
    assert not (box.root / "f").is_symlink()
    assert (box.root / "d").is_dir() and not (box.root / "d").is_symlink()
    assert (box.root / "rel").read_bytes() == b"new"


def test_hard_link_to_host_file_is_refused_or_confined(box: Sandbox) -> None:
    passwd = Path("/etc/passwd")
    before = (passwd.stat().st_nlink, passwd.read_bytes())
    with pytest.raises(ImageError):
        apply(box.root, hard("passwd", "/etc/passwd"))
    with pytest.raises(ImageError):
        apply(box.root, hard("sentinel", str(box.outside / "sentinel")))
    with pytest.raises(ImageError, match=re.escape("hard link 'up' points outside the "
                                                   "image, to '../../etc/passwd'")):
        apply(box.root, hard("up", "../../etc/passwd"))  # (named as the link, not a member)
    with pytest.raises(ImageError):
        apply(box.root, sym("hostetc", "/etc"), hard("pw", "hostetc/passwd"))
    # With an /etc/passwd of its own, the link is to the image's file.
    apply(box.root, dir_("etc"), reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
          hard("copy", "/etc/passwd"), hard("via-link", "hostetc/passwd"))
    own = (box.root / "etc/passwd").stat().st_ino
    assert (box.root / "copy").stat().st_ino == own
    assert (box.root / "via-link").stat().st_ino == own
    assert (passwd.stat().st_nlink, passwd.read_bytes()) == before


def test_hard_link_to_a_symlink_links_the_symlink_itself(box: Sandbox) -> None:
    apply(box.root, sym("s", str(box.outside / "sentinel")), hard("h", "s"))
    assert (box.root / "h").is_symlink()
    assert (box.root / "h").lstat().st_ino == (box.root / "s").lstat().st_ino
    assert (box.root / "h").lstat().st_ino != (box.outside / "sentinel").stat().st_ino


@pytest.mark.parametrize("links", [
    [("a", "b"), ("b", "a")],
    [("self", "self")],
    [("x", "/x")],
    [("p", "q/r"), ("q", "p")],
])
def test_symlink_loops_are_an_image_error(box: Sandbox, links: list[tuple[str, str]]) -> None:
    first = links[0][0]
    with pytest.raises(ImageError):
        apply(box.root, *(sym(n, t) for n, t in links), reg(f"{first}/file", b"loop"))


def test_whiteouts_through_symlinks_stay_inside(box: Sandbox) -> None:
    apply(box.root, sym("abs", str(box.outside)), sym("rel", "../outside"), sym("root", "/"),
          sym("up", "../.."))
    apply(box.root, whiteout("abs/sentinel"), whiteout("rel/dir"), whiteout("root/outside"),
          whiteout("up/outside"), opaque("abs"), opaque("rel"), opaque("up"),
          opaque("abs/dir"))


@pytest.mark.parametrize("name", [".wh..", ".wh...", "sub/.wh...", "sub/.wh.."])
def test_dot_and_dotdot_whiteouts_remove_nothing_outside(box: Sandbox, name: str) -> None:
    (box.root / "sub").mkdir()
    (box.root / "sub" / "keep").write_text("k")
    with contextlib.suppress(ImageError):
        apply(box.root, reg(name))
    assert box.root.is_dir()
    assert (box.root / "sub" / "keep").read_text() == "k"


# safepath ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "parts"), [
    ("a/b/c", ["a", "b", "c"]),
    ("/abs/path", ["abs", "path"]),
    ("./a//b/./", ["a", "b"]),
    # a backslash is an ordinary character of a Linux name (systemd's \x2d escapes)
    ("a\\b", ["a\\b"]),
    ("system-systemd\\x2dcryptsetup.slice", ["system-systemd\\x2dcryptsetup.slice"]),
    ("a\\..\\b", ["a\\..\\b"]),
    ("", []),
    ("./", []),
    ("a..b/...", ["a..b", "..."]),
    # `..` inside the root is cleaned as Go's filepath.Clean (docker, containerd) does
    ("a/b/../c", ["a", "c"]),
    ("a/../b", ["b"]),
    ("a/..", []),
    ("/a/./b/../../c/", ["c"]),
])
def test_clean_member_name(name: str, parts: list[str]) -> None:
    assert clean_member_name(name) == parts


@pytest.mark.parametrize("name", ["..", "../a", "a/../..", "a/../../b", "/../etc/passwd",
                                  "./a/b/../../../x"])
def test_clean_member_name_refuses_dotdot(name: str) -> None:
    with pytest.raises(ValueError, match="traversal"):
        clean_member_name(name)


def test_resolve_in_root_follows_links_as_if_root_were_slash(tmp_path: Path) -> None:
    root = str(tmp_path)
    os.makedirs(tmp_path / "usr/lib")
    os.symlink("usr/lib", tmp_path / "lib")
    os.symlink("/usr", tmp_path / "abs")
    os.symlink("../../../../..", tmp_path / "usr/lib/up")
    os.symlink("/etc/passwd", tmp_path / "pw")
    assert resolve_in_root(root, ["lib", "x"]) == str(tmp_path / "usr/lib/x")
    assert resolve_in_root(root, ["abs", "lib"]) == str(tmp_path / "usr/lib")
    assert resolve_in_root(root, ["lib", "up", "etc"]) == str(tmp_path / "etc")
    assert resolve_in_root(root, ["..", "..", "etc"]) == str(tmp_path / "etc")
    # The last component is followed only when asked.
    assert resolve_in_root(root, ["pw"]) == str(tmp_path / "pw")
    assert resolve_in_root(root, ["pw"], follow_last=True) == str(tmp_path / "etc/passwd")


def test_resolve_in_root_detects_loops(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(OSError, match="symbolic links"):
        resolve_in_root(str(tmp_path), ["a", "x"])


def test_sandbox_detects_changes(tmp_path: Path) -> None:
    """The escape tests rely on this: a write next to the target is noticed."""
    sandbox = Sandbox(tmp_path / "s")
    before = sandbox.snapshot_outside()
    (sandbox.outside / "sentinel").write_text("changed")
    assert sandbox.snapshot_outside() != before


@pytest.mark.parametrize("blob", [b"", gzip.compress(b""), zstandard.compress(b"")])
def test_an_empty_blob_is_an_empty_layer(box: Sandbox, blob: bytes) -> None:
    """As docker and containerd take it (tarfile calls it 'empty file')."""
    apply(box.root, reg("kept", b"x"))
    empty_diff_id = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    apply_layer(io.BytesIO(blob), box.root, diff_id=empty_diff_id)
    assert tree(box.root) == {"kept": "file:x"}
    with pytest.raises(ImageError, match="does not match the image config"):
        apply_layer(io.BytesIO(blob), box.root, diff_id="sha256:" + "0" * 64)


def test_a_path_too_long_for_the_host_is_one_short_line(box: Sandbox) -> None:
    """Named as the image names it, shortened: not the host path of the unpack."""
    deep = "/".join(["d" * 250] * 17)  # ~4250 characters: past PATH_MAX under any root
    with pytest.raises(ImageError) as caught:
        apply(box.root, reg(f"{deep}/file", b"x"))
    message = caught.value.message
    assert message.startswith("bad layer archive: File name too long: /ddd"), message
    assert str(box.root) not in message and len(message) < 200


# VOLUME directories ---------------------------------------------------------------------

def test_the_volumes_an_image_names_are_made_when_its_layers_lack_them(tmp_path: Path) -> None:
    """docker's container has each VOLUME path (its volume is mounted there); a box has it
    as a directory of the image: made root's 0755, inside the root, never over a file."""
    root = tmp_path / "tree"
    (root / "srv").mkdir(parents=True)
    (root / "file").write_text("x")
    os.symlink("/elsewhere", root / "link")  # absolute: resolved inside the root
    os.mkdir(root / "kept", 0o700)
    ownership = Ownership()
    made = make_volume_dirs(root, {"/srv/data/db": {}, "/file/sub": {}, "/link/v": {},
                                   "/kept": {}, "/../../escape": {}}, ownership)
    assert made == ["/elsewhere", "/elsewhere/v", "/srv/data", "/srv/data/db"]
    assert (root / "srv" / "data" / "db").is_dir() and (root / "elsewhere" / "v").is_dir()
    assert stat.S_IMODE((root / "srv" / "data").stat().st_mode) == 0o755
    assert (root / "file").read_text() == "x"  # a file stays a file
    assert stat.S_IMODE((root / "kept").stat().st_mode) == 0o700  # an existing dir as it was
    assert not (tmp_path / "escape").exists() and not (tmp_path / "elsewhere").exists()
    assert ownership.get("/srv/data") == Wanted(0, 0, 0o755)
    assert make_volume_dirs(root, None) == [] and make_volume_dirs(root, ["/x"]) == []


def test_a_volume_through_a_link_to_a_missing_place_makes_that_place(tmp_path: Path) -> None:
    """A database image's `/var/lib/db -> /data/db`, with no /data: docker's mount makes
    /data/db; the image was unusable here ("No such file or directory: .../tree/data/db")."""
    root = tmp_path / "tree"
    (root / "var" / "lib").mkdir(parents=True)
    os.symlink("/data/db", root / "var" / "lib" / "db")
    os.symlink("../../../../outside/x", root / "var" / "lib" / "up")  # (kept inside too)
    (root / "f").write_text("x")
    os.symlink("/f/below", root / "var" / "lib" / "overfile")
    made = make_volume_dirs(root, {"/var/lib/db": {}, "/var/lib/up": {}, "/var/lib/overfile": {}})
    assert made == ["/data", "/data/db", "/outside", "/outside/x"]
    assert (root / "data" / "db").is_dir() and (root / "var" / "lib" / "db").is_symlink()
    assert not (tmp_path / "outside").exists() and (root / "f").read_text() == "x"
