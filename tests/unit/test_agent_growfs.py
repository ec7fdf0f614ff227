"""growfs: the ext4 superblock read, the disk size from sysfs, and a real online grow of
a mounted filesystem (a loop device, as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.growfs import disk_bytes, fs_blocks, grow_to_disk

MIB = 1 << 20
CAP_SYS_RESOURCE = 24


def has_capability(bit: int) -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def mkfs(image: Path, size: int, *options: str) -> None:
    with open(image, "wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", *options, str(image)], check=True)


@pytest.mark.parametrize(("options", "block_size"), [
    (("-b", "4096"), 4096), (("-b", "4096", "-O", "^64bit"), 4096), (("-b", "1024"), 1024),
])
def test_fs_blocks_reads_the_superblock(tmp_path: Path, options: tuple[str, ...],
                                        block_size: int) -> None:
    image = tmp_path / "fs.ext4"
    mkfs(image, 64 * MIB, *options)
    assert fs_blocks(str(image)) == (64 * MIB // block_size, block_size)


def test_fs_blocks_refuses_what_is_not_ext4(tmp_path: Path) -> None:
    image = tmp_path / "zeros"
    image.write_bytes(bytes(4096))
    with pytest.raises(OSError, match="holds no ext4 filesystem"):
        fs_blocks(str(image))


def test_disk_bytes_counts_sectors(tmp_path: Path) -> None:
    (tmp_path / "vdb").mkdir()
    (tmp_path / "vdb" / "size").write_text("20971520\n")
    assert disk_bytes("vdb", str(tmp_path)) == 10 << 30


@pytest.fixture
def loop_mount(tmp_path: Path) -> Iterator[tuple[Path, Path, str]]:
    """A 64 MiB ext4 on a loop device whose file is then made 200 MiB, mounted."""
    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("a loop device and a mount need root and losetup")
    if not has_capability(CAP_SYS_RESOURCE):  # (some containers' root lacks it)
        pytest.skip("growing a mounted ext4 needs CAP_SYS_RESOURCE, which this root lacks")
    image, mountpoint = tmp_path / "fs.ext4", tmp_path / "mnt"
    mkfs(image, 64 * MIB, "-b", "4096")
    os.truncate(image, 200 * MIB)
    mountpoint.mkdir()
    made = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"no loop device here: {made.stderr.strip()}")
    node = made.stdout.strip()
    try:
        subprocess.run(["mount", "-t", "ext4", node, str(mountpoint)], check=True)
        try:
            yield image, mountpoint, node
        finally:
            subprocess.run(["umount", str(mountpoint)], check=False)
    finally:
        subprocess.run(["losetup", "-d", node], check=False)


def test_grow_to_disk_grows_a_mounted_filesystem_once(loop_mount: tuple[Path, Path, str]) -> None:
    _, mountpoint, node = loop_mount
    assert fs_blocks(node) == (64 * MIB // 4096, 4096)
    assert grow_to_disk(str(mountpoint), node, os.path.basename(node)) == 136 * MIB // 4096
    assert fs_blocks(node) == (200 * MIB // 4096, 4096)
    st = os.statvfs(mountpoint)
    assert st.f_blocks * st.f_frsize > 190 * MIB  # the mounted filesystem's own view
    assert grow_to_disk(str(mountpoint), node, os.path.basename(node)) == 0
