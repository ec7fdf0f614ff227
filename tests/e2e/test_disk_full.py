"""Disk full while creating a box: one clear line, exit 125, nothing half-made."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, bx

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root"),
]


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "small"
    home.mkdir()
    # Room for the image's blobs (~120 MB) but not for unpacking them.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(home)], check=True)
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def test_create_on_a_full_disk_leaves_nothing(small_home: Path) -> None:
    env = {"BOXLITE_HOME": str(small_home)}
    proc = bx("create", "--name", "full", IMAGE, "true", env=env)
    assert proc.returncode == 125
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith("boxlite: No space left on device"), lines
    assert "Traceback" not in proc.stderr.decode()
    assert bx("ps", "-a", "-q", env=env).stdout == b""
    assert list((small_home / "boxes").iterdir()) == []
    assert not (small_home / "names" / "full").exists()
    images = small_home / "images"
    assert list((images / "rootfs").glob("*.ext4")) == []
    assert list((images / "tmp").iterdir()) == []
