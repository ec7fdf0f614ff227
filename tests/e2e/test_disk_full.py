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


WRITER = ("dd if=/dev/zero of=/big bs=1M count=100 oflag=direct 2>/dev/null; "
          "echo wrote $(wc -c < /big)")


def _filling_box(name: str, home: Path, tmp_path: Path) -> Path:
    """A box (created) that writes 100 MB, its disk moved onto a 30 MB file system of its
    own (the rest of the host stays free); that file system's mount point."""
    created = bx("create", "--name", name, IMAGE, "sh", "-c", WRITER)
    assert created.returncode == 0, created.stderr
    disks = home / "boxes" / created.stdout.decode().strip() / "disks"
    small = tmp_path / f"small-{name}"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(small)], check=True)
    shutil.move(disks / "rootfs.qcow2", small / "rootfs.qcow2")
    (disks / "rootfs.qcow2").symlink_to(small / "rootfs.qcow2")
    return small


def _wait_held(name: str, attached: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 240
    status = ""
    while "(Stopped: host disk full)" not in status:
        assert time.monotonic() < deadline, status
        assert attached is None or attached.poll() is None, attached.communicate()
        time.sleep(1)
        status = _status(name)


def test_a_running_box_whose_host_disk_fills_says_so_and_unpause_continues_it(
        e2e_home: Path, tmp_path: Path) -> None:
    """QEMU stops the VM on a write the full host disk refused (werror=enospc): ps and
    inspect said "Up", exec and top waited out their minute, a foreground start said
    nothing. Now all say it (exec at once, with the fix), and once space is freed
    `unpause` continues the box, no write lost."""
    small = _filling_box("filling", e2e_home, tmp_path)
    try:
        attached = subprocess.Popen([boxlite_bin(), "start", "-a", "filling"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL)
        _wait_held("filling", attached)
        error = bx("inspect", "-f", "{{.State.Error}}", "filling").stdout.decode()
        assert "its disk could not be written (the host's disk is full)" in error
        refused = bx("exec", "filling", "true")
        assert refused.returncode == 125
        assert refused.stderr.decode().splitlines() == [
            "boxlite: box filling's VM is stopped: its disk could not be written (the host's "
            "disk is full): cannot exec in it",
            "  hint: free space there, then: boxlite unpause filling"]
        still = bx("unpause", "filling")  # (the space not freed yet: it stops again)
        assert still.returncode == 125
        assert still.stderr.decode().splitlines()[0] == (
            "boxlite: box filling's VM stopped again at once: the host's disk is still full")
        assert _status("filling").endswith("(Stopped: host disk full)")
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


def test_kill_ends_a_box_that_a_full_disk_holds(e2e_home: Path, tmp_path: Path) -> None:
    """(its SIGKILL went to the guest, which a held VM cannot take: refused, saying a
    paused box takes SIGKILL only)"""
    small = _filling_box("held", e2e_home, tmp_path)
    try:
        assert bx("start", "held").returncode == 0
        _wait_held("held")
        killed = bx("kill", "held")
        assert killed.returncode == 0, killed.stderr
        assert _status("held").startswith("Exited (137)")
    finally:
        bx("rm", "-f", "held")
        subprocess.run(["umount", "-l", str(small)], check=False)
