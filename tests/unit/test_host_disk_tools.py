"""The disk tools' runner: its children die with the process that ran them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from boxlite_cli.disks.tools import run_tool
from boxlite_cli.errors import DiskError


def _running(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_a_tool_dies_with_the_cli_that_ran_it() -> None:
    """A `snapshot rm` killed mid-merge left qemu-img merging on, outside the box's lock."""
    marker = f"{os.getpid() % 97 + 100}.{time.time_ns() % 10**6}"
    script = ("from boxlite_cli.disks.tools import run_tool\n"
              f"run_tool(['sleep', '{marker}'], 'sleeping')\n")
    cli = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not _running(f"sleep {marker}"):
            assert time.monotonic() < deadline, "the tool never ran"
            time.sleep(0.02)
        cli.send_signal(signal.SIGKILL)
        cli.wait(10)
        deadline = time.monotonic() + 10
        while _running(f"sleep {marker}"):
            assert time.monotonic() < deadline, "the tool outlived its CLI"
            time.sleep(0.02)
    finally:
        cli.kill()
        for pid in _running(f"sleep {marker}"):
            os.kill(pid, signal.SIGKILL)


def test_a_failing_tool_says_its_last_line() -> None:
    with pytest.raises(DiskError, match=r"^listing: .*No such file"):
        run_tool(["ls", "/no/such/path"], "listing")


def test_each_ext4_made_has_its_own_uuid_and_other_files_none(tmp_path: Path) -> None:
    """filesystem_uuid tells one unpack of an image from the next (runtime/diskbase.py)."""
    from boxlite_cli.disks.ext4 import make_ext4
    from boxlite_cli.disks.ext4id import filesystem_uuid

    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "f").write_text("x")
    uuids = []
    for name in ("a.ext4", "b.ext4"):
        make_ext4(tmp_path / "tree", tmp_path / name, free_bytes=4 << 20)
        uuids.append(filesystem_uuid(tmp_path / name))
    assert all(len(u) == 32 for u in uuids) and uuids[0] != uuids[1]
    (tmp_path / "short").write_bytes(b"x" * 100)
    (tmp_path / "zeros").write_bytes(bytes(4096))
    assert filesystem_uuid(tmp_path / "short") == filesystem_uuid(tmp_path / "zeros") == ""


def test_a_running_box_on_a_base_unpacked_again_is_told_to_save_its_changes(
        tmp_path: Path) -> None:
    """Its VM holds the old base open: commit and cp still read its disk (tester AT: the
    hint said rm, which refuses a running box)."""
    from boxlite_cli.runtime.diskbase import check_disk_base
    from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status

    base = tmp_path / "base.ext4"
    base.write_bytes(bytes(4096))
    state = BoxState(id="a" * 64, name="web", status=Status.RUNNING, config=BoxConfig(
        image="img", image_id="sha256:" + "0" * 64, rootfs_base=str(base),
        process=ProcessSpec(["sh"]), rootfs_base_id="f" * 32))
    with pytest.raises(DiskError) as e:
        check_disk_base(state)
    assert "only its running VM can read its disk now" in e.value.message
    assert e.value.hint == ("save what it changed first (boxlite commit web IMAGE, or boxlite "
                            "cp), then remove it (boxlite rm -f web)")
    state.status = Status.EXITED
    with pytest.raises(DiskError, match="its disk does not fit the new one"):
        check_disk_base(state)
    state.config.rootfs_base_id = ""  # (made by an older boxlite: not known, not refused)
    check_disk_base(state)
