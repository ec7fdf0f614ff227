"""resolve_in_root and the helpers built on it: symlinks never leave the root."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.resolve import (
    MAX_SYMLINKS,
    container_path,
    ensure_file_in_root,
    join_container,
    mkdir_all_in_root,
    open_in_root,
    read_file_in_root,
    resolve_in_root,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "usr" / "bin").mkdir(parents=True)
    (r / "etc").mkdir()
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (r / "usr" / "bin" / "tool").write_text("#!/bin/sh\n")
    os.symlink("usr/bin", r / "bin")  # relative
    os.symlink("/usr/bin", r / "abs-bin")  # absolute: relative to the root
    os.symlink("../../../../../../etc", r / "usr" / "dotdot")  # climbs above the root
    os.symlink("/", r / "slash")
    return r


def rel(root: Path, path: str) -> str:
    return os.path.relpath(path, root)


def test_plain_paths(root: Path) -> None:
    assert resolve_in_root(str(root), "/usr/bin/tool") == str(root / "usr/bin/tool")
    assert resolve_in_root(str(root), "usr//bin/./tool") == str(root / "usr/bin/tool")
    assert resolve_in_root(str(root), "/") == str(root)
    assert resolve_in_root(str(root), "") == str(root)


def test_relative_and_absolute_symlinks(root: Path) -> None:
    assert rel(root, resolve_in_root(str(root), "/bin/tool")) == "usr/bin/tool"
    assert rel(root, resolve_in_root(str(root), "/abs-bin/tool")) == "usr/bin/tool"
    assert rel(root, resolve_in_root(str(root), "/slash/slash/etc")) == "etc"


def test_dotdot_never_leaves_the_root(root: Path) -> None:
    assert resolve_in_root(str(root), "/../../..") == str(root)
    assert rel(root, resolve_in_root(str(root), "/../../etc/passwd")) == "etc/passwd"
    assert rel(root, resolve_in_root(str(root), "/usr/dotdot/passwd")) == "etc/passwd"
    # '..' after a symlink applies to the link's target, like the kernel
    assert rel(root, resolve_in_root(str(root), "/abs-bin/..")) == "usr"


def test_escaping_symlink_targets_stay_inside(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(str(outside), root / "evil")  # absolute host path: re-rooted
    os.symlink("../outside", root / "evil2")
    got = resolve_in_root(str(root), "/evil/secret")
    assert got == str(root / outside.relative_to("/") / "secret")
    assert rel(root, resolve_in_root(str(root), "/evil2/secret")) == "outside/secret"
    for p in ("/evil/secret", "/evil2/secret", "/usr/dotdot/../../x"):
        assert os.path.commonpath([resolve_in_root(str(root), p), str(root)]) == str(root)


def test_missing_components_are_appended(root: Path) -> None:
    assert rel(root, resolve_in_root(str(root), "/bin/new/dir")) == "usr/bin/new/dir"
    assert rel(root, resolve_in_root(str(root), "/nope/../etc")) == "etc"


def test_dangling_symlink_resolves_to_its_target_path(root: Path) -> None:
    os.symlink("/var/lib/missing", root / "dangling")
    assert rel(root, resolve_in_root(str(root), "/dangling/x")) == "var/lib/missing/x"


def test_symlink_loops_raise_eloop(root: Path) -> None:
    os.symlink("loop2", root / "loop1")
    os.symlink("/loop1", root / "loop2")
    os.symlink("self", root / "self")
    for p in ("/loop1", "/self/x"):
        with pytest.raises(OSError) as info:
            resolve_in_root(str(root), p)
        assert info.value.errno == errno.ELOOP


def test_long_chains_are_fine_up_to_the_limit(root: Path) -> None:
    for i in range(MAX_SYMLINKS):
        os.symlink(f"c{i + 1}", root / f"c{i}")
    (root / f"c{MAX_SYMLINKS}").mkdir()
    assert rel(root, resolve_in_root(str(root), "/c0")) == f"c{MAX_SYMLINKS}"
    os.rename(root / f"c{MAX_SYMLINKS}", root / "real")
    os.symlink("real", root / f"c{MAX_SYMLINKS}")
    with pytest.raises(OSError) as info:
        resolve_in_root(str(root), "/c0")
    assert info.value.errno == errno.ELOOP


def test_root_of_slash() -> None:
    assert resolve_in_root("/", "/../etc/../etc") == "/etc"
    assert container_path("/", "/etc/passwd") == "/etc/passwd"


def test_container_path(root: Path) -> None:
    assert container_path(str(root), str(root)) == "/"
    assert container_path(str(root), str(root / "a/b")) == "/a/b"
    with pytest.raises(ValueError):
        container_path(str(root), str(root.parent))


def test_join_container() -> None:
    assert join_container("/work", "bin/x") == "/work/bin/x"
    assert join_container("/work", "/abs") == "/abs"
    assert join_container("/", "../../x") == "/x"
    assert join_container("", "x") == "/x"
    assert join_container("/", "//x") == "/x"


def test_mkdir_all_follows_links_inside(root: Path) -> None:
    host = mkdir_all_in_root(str(root), "/abs-bin/a/b")
    assert host == str(root / "usr/bin/a/b")
    assert os.path.isdir(host)
    os.symlink("/nowhere/deep", root / "dangling")
    assert mkdir_all_in_root(str(root), "/dangling") == str(root / "nowhere/deep")
    assert (root / "nowhere/deep").is_dir()


def test_mkdir_all_rejects_files(root: Path) -> None:
    with pytest.raises(NotADirectoryError):
        mkdir_all_in_root(str(root), "/etc/passwd/x")


def test_ensure_file(root: Path) -> None:
    os.symlink("/etc/real-hosts", root / "etc" / "hosts")
    assert ensure_file_in_root(str(root), "/etc/hosts") == str(root / "etc/real-hosts")
    assert (root / "etc/real-hosts").is_file()
    # existing files are left alone
    assert ensure_file_in_root(str(root), "/etc/passwd") == str(root / "etc/passwd")
    assert (root / "etc/passwd").read_text().startswith("root:")
    assert ensure_file_in_root(str(root), "/new/dir/file") == str(root / "new/dir/file")
    with pytest.raises(IsADirectoryError):
        ensure_file_in_root(str(root), "/etc")


def test_a_fifo_or_a_directory_reads_as_no_file(root: Path) -> None:
    """A box that makes its /etc/passwd a FIFO must not hang the agent (top, exec -u)."""
    os.mkfifo(root / "fifo")
    (root / "dir").mkdir()
    assert read_file_in_root(str(root), "/fifo") is None
    assert read_file_in_root(str(root), "/dir") is None


def test_open_and_read_in_root(root: Path, tmp_path: Path) -> None:
    (tmp_path / "host-passwd").write_text("host secret")
    os.symlink("/etc/passwd", root / "link")
    assert read_file_in_root(str(root), "/link") == b"root:x:0:0::/root:/bin/sh\n"
    assert read_file_in_root(str(root), "/missing") is None
    assert read_file_in_root(str(root), "/etc/passwd/x") is None
    os.symlink(str(tmp_path / "host-passwd"), root / "escape")
    assert read_file_in_root(str(root), "/escape") is None
    fd = open_in_root(str(root), "/")
    os.close(fd)
