"""Volumes in the guest (volumes.py) without a VM: a new volume is filled from the
image, shares are mounted before any target (so the image is what gets copied), and
nothing of the tree is followed out of the root."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent import volumes
from boxlite_agent.volumes import VolumeSpec, fill_from_image, mount_volumes

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An image root: /srv/app with a file, a subdirectory, links in and out, a FIFO."""
    r = tmp_path / "root"
    app = r / "srv" / "app"
    (app / "conf.d").mkdir(parents=True)
    (app / "index.html").write_text("hello")
    (app / "index.html").chmod(0o640)
    (app / "conf.d" / "a.conf").write_text("a=1")
    (app / "current").symlink_to("conf.d")
    (app / "escape").symlink_to("/etc/passwd")
    os.mkfifo(app / "pipe")
    (r / "linked").symlink_to("/srv/app")  # a target that is a link, inside the root
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("host")
    (r / "out").symlink_to("../../outside")
    if IS_ROOT:
        os.lchown(app / "index.html", 1000, 1001)
    return r


def test_fill_copies_the_tree_with_modes_links_and_owners(root: Path, tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    fill_from_image(str(root), "/srv/app", str(share))
    assert sorted(os.listdir(share)) == ["conf.d", "current", "escape", "index.html"]  # no FIFO
    assert (share / "index.html").read_text() == "hello"
    assert stat.S_IMODE((share / "index.html").stat().st_mode) == 0o640
    assert (share / "conf.d" / "a.conf").read_text() == "a=1"
    assert os.readlink(share / "current") == "conf.d"
    assert os.readlink(share / "escape") == "/etc/passwd"  # a link, copied as one
    if IS_ROOT:
        st = (share / "index.html").stat()
        assert (st.st_uid, st.st_gid) == (1000, 1001)


def test_fill_keeps_hard_links_as_links(root: Path, tmp_path: Path) -> None:
    """perl and perl5.36.0 are one file in the image: one in the volume too (tester AS:
    two copies), as docker's copy-up keeps them."""
    app = root / "srv" / "app"
    os.link(app / "index.html", app / "conf.d" / "same.html")
    share = tmp_path / "share"
    share.mkdir()
    fill_from_image(str(root), "/srv/app", str(share))
    first, second = (share / "conf.d" / "same.html").stat(), (share / "index.html").stat()
    assert (first.st_ino, first.st_nlink) == (second.st_ino, 2)
    assert (share / "conf.d" / "same.html").read_text() == "hello"


def test_fill_keeps_the_times_of_directories_and_of_the_share(root: Path, tmp_path: Path) -> None:
    """(filling a directory moved its time to now: a tester saw /etc/apt's subdirectories
    and /var/mail dated the day the volume was made)"""
    app = root / "srv" / "app"
    for path, when in ((app / "conf.d", 1_000_000_000), (app, 1_100_000_000)):
        os.utime(path, (when, when))
    share = tmp_path / "share"
    share.mkdir()
    fill_from_image(str(root), "/srv/app", str(share))
    assert (share / "conf.d").stat().st_mtime == 1_000_000_000
    assert share.stat().st_mtime == 1_100_000_000


def test_fill_resolves_the_target_inside_the_root(root: Path, tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    fill_from_image(str(root), "/linked", str(share))  # -> /srv/app in the root
    assert (share / "index.html").read_text() == "hello"
    other = tmp_path / "other"
    other.mkdir()
    fill_from_image(str(root), "/out", str(other))  # ../../outside stays in the root: none
    assert os.listdir(other) == []


def test_fill_leaves_a_volume_with_content_and_a_missing_target_alone(root: Path,
                                                                      tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "mine").write_text("kept")
    fill_from_image(str(root), "/srv/app", str(share))
    assert os.listdir(share) == ["mine"]
    empty = tmp_path / "empty"
    empty.mkdir()
    fill_from_image(str(root), "/no/such", str(empty))
    assert os.listdir(empty) == []


def test_shares_are_filled_before_any_target_is_mounted(root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A parent volume bound first would hide the image's content of a child's target."""
    calls: list[tuple[str, str | None]] = []
    monkeypatch.setattr(volumes, "load_modules", lambda: None)
    monkeypatch.setattr(volumes, "fill_from_image",
                        lambda r, target, share: calls.append(("fill", target)))

    def mount(source: str | None, target: str, fstype: str | None, flags: int,
              data: str | None) -> None:
        calls.append(("9p" if fstype == "9p" else "bind", os.path.relpath(target, tmp_path)))

    specs = [VolumeSpec("vol1", "/srv/app/conf.d", populate=True),
             VolumeSpec("vol0", "/srv", populate=True), VolumeSpec("vol2", "/data")]
    mount_volumes(str(root), specs, hidden=str(tmp_path / "hidden"), mount=mount,
                  is_mounted=lambda _: False)
    assert calls == [("9p", "hidden/vol0"), ("fill", "/srv"), ("9p", "hidden/vol2"),
                     ("9p", "hidden/vol1"), ("fill", "/srv/app/conf.d"),
                     ("bind", "root/srv"), ("bind", "root/data"), ("bind", "root/srv/app/conf.d")]


def test_a_target_the_image_makes_impossible_is_the_boxs_error(root: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A volume on a path under one of the image's files: INVALID_ARGUMENT, one line (the
    box's own setting; a warm start keeps its template), not an internal error."""
    from boxlite_agent.errors import InvalidArgument

    monkeypatch.setattr(volumes, "load_modules", lambda: None)
    with pytest.raises(InvalidArgument,
                       match=r"^volume /srv/app/index.html/x: cannot mount there: Not a directory"):
        mount_volumes(str(root), [VolumeSpec("vol0", "/srv/app/index.html/x")],
                      hidden=str(tmp_path / "hidden"), mount=lambda *a: None,
                      is_mounted=lambda _: False)


def test_a_volume_goes_over_the_boxs_own_mounts_but_never_twice(
        root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/etc/hosts is a mount point already (the box's own, bound at Init): the volume
    goes on top (it was skipped: the user's file ignored); a target that holds a share
    already (the same Init sent again) is left as it is."""
    monkeypatch.setattr(volumes, "load_modules", lambda: None)
    (root / "etc").mkdir()
    (root / "etc" / "hosts").write_text("the box's")
    share = tmp_path / "hidden" / "vol0"
    share.mkdir(parents=True)
    (share / "hosts").write_text("mine")
    binds: list[str] = []

    def mount(source: str | None, target: str, fstype: str | None, flags: int,
              data: str | None) -> None:
        if fstype != "9p":
            binds.append(os.path.relpath(target, root))

    spec = [VolumeSpec("vol0", "/etc/hosts", file_name="hosts")]
    for has_share, expected in ((False, ["etc/hosts"]), (True, [])):
        binds.clear()
        mount_volumes(str(root), spec, hidden=str(tmp_path / "hidden"), mount=mount,
                      is_mounted=lambda _: True, has_share=lambda _, h=has_share: h)
        assert binds == expected
