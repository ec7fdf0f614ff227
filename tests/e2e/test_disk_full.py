"""Disk full while creating a box: one clear line, exit 125, nothing half-made; and under
a running box: said, and continued once there is space."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin, bx

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


def _status(name: str) -> str:
    """The box's STATUS in ps (other tests' boxes may be listed too)."""
    rows = bx("ps", "-a", "--format", "{{.Names}}|{{.Status}}").stdout.decode().splitlines()
    return next((row.split("|", 1)[1] for row in rows if row.startswith(name + "|")), "")


def test_a_running_box_whose_host_disk_fills_says_so_and_unpause_continues_it(
        e2e_home: Path, tmp_path: Path) -> None:
    """QEMU stops the VM on a write the full host disk refused (werror=enospc): ps and
    inspect said "Up", exec and top waited out their minute, a foreground start said
    nothing. Now all say it (exec at once, with the fix), and once space is freed
    `unpause` continues the box, no write lost."""
    created = bx("create", "--name", "filling", IMAGE, "sh", "-c",
                 "dd if=/dev/zero of=/big bs=1M count=100 oflag=direct 2>/dev/null; "
                 "echo wrote $(wc -c < /big)")
    assert created.returncode == 0, created.stderr
    disks = e2e_home / "boxes" / created.stdout.decode().strip() / "disks"
    small = tmp_path / "small"
    small.mkdir()
    # (its disk moved onto a small file system of its own: the rest of the host stays free)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(small)], check=True)
    try:
        shutil.move(disks / "rootfs.qcow2", small / "rootfs.qcow2")
        (disks / "rootfs.qcow2").symlink_to(small / "rootfs.qcow2")
        attached = subprocess.Popen([boxlite_bin(), "start", "-a", "filling"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        status = ""
        while "(Stopped: host disk full)" not in status:
            assert time.monotonic() < deadline, status
            assert attached.poll() is None, attached.communicate()
            time.sleep(1)
            status = _status("filling")
        error = bx("inspect", "-f", "{{.State.Error}}", "filling").stdout.decode()
        assert "its disk could not be written (the host's disk is full)" in error
        refused = bx("exec", "filling", "true")
        assert refused.returncode == 125
        assert refused.stderr.decode().splitlines() == [
            "boxlite: box filling's VM is stopped: its disk could not be written (the host's "
            "disk is full): cannot exec in it",
            "  hint: free space there, then: boxlite unpause filling"]
        subprocess.run(["mount", "-o", "remount,size=300m", str(small)], check=True)
        assert bx("unpause", "filling").returncode == 0
        out, err = attached.communicate(timeout=240)
        assert attached.returncode == 0, err
        assert out == b"wrote 104857600\n"
        assert ("boxlite: warning: box filling's VM is stopped: its disk could not be written "
                "(the host's disk is full); free space there, then: boxlite unpause "
                "filling") in err.decode()
        assert _status("filling").startswith("Exited (0)")
    finally:
        bx("rm", "-f", "filling")
        subprocess.run(["umount", "-l", str(small)], check=False)
