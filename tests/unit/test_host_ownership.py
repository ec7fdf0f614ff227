"""Owners, modes, device nodes and xattrs of layers end up in the ext4 image, with or without root.

Unprivileged, the unpack cannot chown, mknod or set `security.*` xattrs: it records what
the layers wanted and `debugfs` writes it into the image (disks/ownership.py). Each case
here unpacks the same layers into an image once as an unprivileged user (uid 65534, via
setpriv, in a directory that user owns) and once as root, and reads the image back with
`debugfs` alone: both must say the same.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from boxlite_cli.disks.ext4 import make_ext4
from boxlite_cli.disks.ownership import Ownership, quote

IS_ROOT = os.geteuid() == 0
NOBODY = 65534
REPO = Path(__file__).resolve().parents[2]
CAPABILITY = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+ep
ODD_NAME = 'with space/it\'s "odd"'

pytestmark = [
    pytest.mark.skipif(shutil.which("debugfs", path="/usr/sbin:/sbin:/usr/bin:/bin") is None,
                       reason="debugfs (e2fsprogs) is not installed"),
    pytest.mark.skipif(shutil.which("mkfs.ext4", path="/usr/sbin:/sbin:/usr/bin:/bin") is None,
                       reason="mkfs.ext4 (e2fsprogs) is not installed"),
]


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0,
          pax: dict[str, str] | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, 1_600_000_000
    if pax:
        info.pax_headers = dict(pax)
    return info


def _layer(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def f(name: str, mode: int = 0o644, uid: int = 0, gid: int = 0, data: bytes = b"x",
      pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.REGTYPE, mode, uid, gid, pax), data


def d(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.DIRTYPE, mode, uid, gid), b""


def dev(name: str, kind: bytes, major: int, minor: int, mode: int, uid: int = 0,
        gid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, kind, mode, uid, gid)
    info.devmajor, info.devminor = major, minor
    return info, b""


def link(name: str, target: str, kind: bytes = tarfile.LNKTYPE,
         uid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, kind, 0o777, uid, uid)
    info.linkname = target
    return info, b""


# The xattr value travels through the tar's PAX header as text (surrogate-escaped bytes).
CAP_PAX = CAPABILITY.decode("utf-8", "surrogateescape")

LAYERS = [
    _layer(
        d("home", 0o755), d("home/user", 0o700, 1000, 1000),
        f("home/user/notes", 0o600, 1000, 1000, b"mine"),
        f("etc/shadow", 0o640, 0, 42, b"root:*:1::::::"),
        f("usr/bin/su", 0o4755, 0, 0, b"\x7fELF su"),
        link("usr/bin/su2", "usr/bin/su"),
        link("usr/bin/sulink", "su", tarfile.SYMTYPE, uid=1000),
        dev("dev/null", tarfile.CHRTYPE, 1, 3, 0o666),
        f("bin/ping", 0o755, 0, 0, b"\x7fELF ping",
          pax={"SCHILY.xattr.security.capability": CAP_PAX, "SCHILY.xattr.user.note": "pong"}),
        f(ODD_NAME, 0o640, 7, 8, b"odd"),
        d("gone", 0o755, 5, 5), f("gone/child", 0o644, 5, 5),
        d("shared", 0o2775, 0, 100),
    ),
    _layer(
        f(".wh.gone"),
        dev("dev/loop0", tarfile.BLKTYPE, 7, 0, 0o660, 0, 6),
        f("etc/shadow", 0o600, 0, 42, b"root:!:1::::::"),  # the last writer wins
        f("opt/app/run", 0o755, 1000, 1000, b"#!/bin/sh\n"),  # parents not listed
        f("gone", 0o600, 3, 3, b"a file now"),
    ),
]

UNPACK = """
import sys
from pathlib import Path
from boxlite_cli.disks.ext4 import make_ext4
from boxlite_cli.disks.ownership import ownership_for_unpack
from boxlite_cli.oci.unpack import apply_layer

work = Path(sys.argv[1])
tree = work / "tree"
tree.mkdir()
ownership = ownership_for_unpack()
for layer in sorted(work.glob("layer-*.tar")):
    with open(layer, "rb") as f:
        apply_layer(f, tree, ownership)
make_ext4(tree, work / "rootfs.ext4", free_bytes=8 << 20, ownership=ownership)
print("recorded" if ownership is not None else "as root")
"""


@dataclass
class Inode:
    type: str
    mode: int
    uid: int
    gid: int
    device: tuple[int, int] | None


def _debugfs(image: Path, request: str) -> str:
    proc = subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, text=True,
                          check=True)
    return proc.stdout


def stat_in(image: Path, path: str) -> Inode:
    out = _debugfs(image, f"stat {quote(path)}")
    m = re.search(r"Type: (.+?)\s+Mode:\s+(\d+)", out)
    owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
    assert m and owner, f"no inode {path!r} in the image: {out!r}"
    dev_m = re.search(r"Device major/minor number: (\d+):(\d+)", out)
    return Inode(m.group(1), int(m.group(2), 8), int(owner.group(1)), int(owner.group(2)),
                 (int(dev_m.group(1)), int(dev_m.group(2))) if dev_m else None)


def xattr_in(image: Path, path: str, name: str, work: Path) -> bytes:
    out = work / "xattr.value"
    out.unlink(missing_ok=True)
    _debugfs(image, f"ea_get -f {quote(str(out))} {quote(path)} {quote(name)}")
    return out.read_bytes()


def exists_in(image: Path, path: str) -> bool:
    proc = subprocess.run(["debugfs", "-R", f"stat {quote(path)}", str(image)], capture_output=True,
                          text=True, check=False)
    return "Inode:" in proc.stdout


def _unpack(work: Path, unprivileged: bool) -> str:
    for i, data in enumerate(LAYERS):
        (work / f"layer-{i}.tar").write_bytes(data)
    cmd = [sys.executable, "-c", UNPACK, str(work)]
    if unprivileged and IS_ROOT:
        for p in [work, *work.iterdir()]:
            os.chown(p, NOBODY, NOBODY)
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is not installed")
        cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(work)}
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="module", params=["unprivileged", "root"])
def unpacked(request: pytest.FixtureRequest) -> Iterator[tuple[Path, Path]]:
    unprivileged = request.param == "unprivileged"
    if not unprivileged and not IS_ROOT:
        pytest.skip("the root case needs root")
    # Not under pytest's tmp_path: uid 65534 cannot enter root's 0700 directories.
    work = Path(tempfile.mkdtemp(prefix="boxlite-ownership-"))
    try:
        how = _unpack(work, unprivileged)
        assert how == ("recorded" if unprivileged else "as root")
        yield work / "rootfs.ext4", work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_owners_of_files_and_directories(unpacked: tuple[Path, Path]) -> None:
    image, _ = unpacked
    owners = {p: (stat_in(image, p).uid, stat_in(image, p).gid)
              for p in ("/home", "/home/user", "/home/user/notes", "/etc/shadow", "/shared")}
    assert owners == {"/home": (0, 0), "/home/user": (1000, 1000), "/home/user/notes": (1000, 1000),
                      "/etc/shadow": (0, 42), "/shared": (0, 100)}


def test_modes_with_set_id_bits(unpacked: tuple[Path, Path]) -> None:
    image, _ = unpacked
    su = stat_in(image, "/usr/bin/su")
    assert (su.type, su.mode & 0o7777, su.uid) == ("regular", 0o4755, 0)
    assert stat_in(image, "/shared").mode & 0o7777 == 0o2775
    assert stat_in(image, "/home/user").mode & 0o7777 == 0o700
    assert stat_in(image, "/etc/shadow").mode & 0o7777 == 0o600  # from the second layer


def test_hard_and_symbolic_links(unpacked: tuple[Path, Path]) -> None:
    image, _ = unpacked
    su2 = stat_in(image, "/usr/bin/su2")
    assert (su2.mode & 0o7777, su2.uid) == (0o4755, 0)
    sulink = stat_in(image, "/usr/bin/sulink")
    assert (sulink.type, sulink.uid, sulink.gid) == ("symlink", 1000, 1000)


def test_device_nodes(unpacked: tuple[Path, Path]) -> None:
    image, _ = unpacked
    null = stat_in(image, "/dev/null")
    assert (null.type, null.mode & 0o7777, null.device, null.uid) == ("character special", 0o666, (1, 3), 0)
    loop = stat_in(image, "/dev/loop0")
    assert (loop.type, loop.mode & 0o7777, loop.device, loop.gid) == ("block special", 0o660, (7, 0), 6)


def test_xattrs_security_and_user(unpacked: tuple[Path, Path]) -> None:
    image, work = unpacked
    assert xattr_in(image, "/bin/ping", "security.capability", work) == CAPABILITY
    assert xattr_in(image, "/bin/ping", "user.note", work) == b"pong"


def test_path_with_spaces_and_quotes(unpacked: tuple[Path, Path]) -> None:
    image, _ = unpacked
    odd = stat_in(image, "/" + ODD_NAME)
    assert (odd.type, odd.mode & 0o7777, odd.uid, odd.gid) == ("regular", 0o640, 7, 8)


def test_whiteouts_and_parents_nobody_listed(unpacked: tuple[Path, Path]) -> None:
    image, _ = unpacked
    assert not exists_in(image, "/gone/child")
    gone = stat_in(image, "/gone")
    assert (gone.type, gone.mode & 0o7777, gone.uid) == ("regular", 0o600, 3)
    for parent in ("/opt", "/opt/app"):
        p = stat_in(image, parent)
        assert (p.type, p.mode & 0o7777, p.uid, p.gid) == ("directory", 0o755, 0, 0)
    run = stat_in(image, "/opt/app/run")
    assert (run.mode & 0o7777, run.uid, run.gid) == (0o755, 1000, 1000)


def test_no_lost_and_found_unless_the_image_has_one(unpacked: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    """mkfs.ext4's /lost+found is not part of the image: a container's root has none."""
    image, _ = unpacked
    assert exists_in(image, "/etc/shadow") and not exists_in(image, "/lost+found")
    tree = tmp_path / "tree"
    (tree / "lost+found").mkdir(parents=True)
    (tree / "lost+found" / "kept").write_text("the image's own")
    make_ext4(tree, tmp_path / "own.ext4", free_bytes=1 << 20)
    assert exists_in(tmp_path / "own.ext4", "/lost+found/kept")


# the record itself -------------------------------------------------------------------

def test_quote_doubles_quotes_and_refuses_line_breaks() -> None:
    assert quote('a "b" c') == '"a ""b"" c"'
    with pytest.raises(Exception, match="line break"):
        quote("a\nb")


def test_removing_a_directory_forgets_what_was_below_it(tmp_path: Path) -> None:
    from boxlite_cli.disks.ownership import Wanted

    rec = Ownership()
    for p in ("/a", "/a/b", "/a/b/c", "/ab"):
        rec.set(p, Wanted(1, 1, 0o644))
    rec.link("/l", "/a/b/c")
    rec.remove("/a", tree=True)
    assert [p for p in ("/a", "/a/b", "/a/b/c", "/ab", "/l") if rec.get(p)] == ["/ab", "/l"]


def test_unprivileged_tree_stays_readable_by_its_user(tmp_path: Path) -> None:
    from boxlite_cli.oci.unpack import apply_layer

    rec = Ownership()
    apply_layer(io.BytesIO(_layer(d("locked", 0o000), f("locked/secret", 0o000), f("setuid", 0o4711))),
                tmp_path, rec)
    assert stat.S_IMODE((tmp_path / "locked").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "locked/secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "setuid").stat().st_mode) == 0o711  # set-id bits only in the image
    wanted = rec.get("/setuid")
    assert wanted is not None and wanted.mode == 0o4711
