"""outfile: a file written whole replaces a regular file or nothing, never a device,
a pipe or a socket, and writes through a link to the file it names."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.outfile import output_path, written_whole


def test_a_new_file_is_written_whole(tmp_path: Path) -> None:
    with written_whole(tmp_path / "out.tar") as f:
        f.write(b"data")
    assert (tmp_path / "out.tar").read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["out.tar"]


def test_a_link_is_followed_and_kept(tmp_path: Path) -> None:
    (tmp_path / "real.tar").write_bytes(b"old")
    (tmp_path / "link.tar").symlink_to("real.tar")
    with written_whole(tmp_path / "link.tar") as f:
        f.write(b"new")
    assert (tmp_path / "link.tar").is_symlink()
    assert (tmp_path / "real.tar").read_bytes() == b"new"


def test_a_dangling_link_names_the_file_to_make(tmp_path: Path) -> None:
    (tmp_path / "link.tar").symlink_to("made.tar")
    assert output_path(tmp_path / "link.tar") == tmp_path / "made.tar"


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory", "link to a fifo"])
def test_what_is_not_a_regular_file_is_refused_and_kept(tmp_path: Path, kind: str) -> None:
    """(`save -o` onto a device or a pipe renamed a file over it.)"""
    target = tmp_path / "target"
    if kind in ("fifo", "link to a fifo"):
        os.mkfifo(target)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(target))
    else:
        target.mkdir()
    given = target
    if kind == "link to a fifo":
        given = tmp_path / "link"
        given.symlink_to(target)
    before = os.lstat(given).st_mode
    with pytest.raises(UsageError, match="is a directory" if kind == "directory"
                       else "is not a regular file"), written_whole(given) as f:
        f.write(b"never")
    assert os.lstat(given).st_mode == before
    assert not stat.S_ISREG(os.stat(given).st_mode)
    assert sorted(os.listdir(tmp_path)) == sorted({"target", given.name})


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such directory"):
        output_path(tmp_path / "nowhere" / "out.tar")
