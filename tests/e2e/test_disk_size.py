"""--disk-size: the box's root disk is that large and its filesystem fills it, on every
kind of start (cold, warm from a template, restart, clone), without leaking into boxes
of the image's own size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, bx, vm_processes

pytestmark = pytest.mark.e2e

GIB = 1 << 30
FS_SIZE = ["df", "-B1", "--output=size", "/"]


def fs_size(out: bytes) -> int:
    """The size `df --output=size` printed (the last line)."""
    return int(out.split()[-1])


def ok(*args: str) -> bytes:
    proc = bx(*args)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def grown_to(size: int, gib: int) -> bool:
    """ext4 of a `gib` GiB disk (its metadata takes a few percent)."""
    return 0.95 * gib * GIB < size <= gib * GIB


def test_disk_size_on_cold_warm_restart_and_clone(e2e_home: Path) -> None:
    try:
        # First of its size: cold; it saves a template of its own (the key has the size)
        assert grown_to(fs_size(ok("run", "--rm", "--disk-size", "9g", IMAGE, *FS_SIZE)), 9)
        # Warm, from that template; a box of the image's size is not given that disk
        assert grown_to(fs_size(ok("run", "--rm", "--disk-size", "9g", IMAGE, *FS_SIZE)), 9)
        default = fs_size(ok("run", "--rm", IMAGE, *FS_SIZE))
        assert default < 6 * GIB

        ok("create", "--name", "ds", "--disk-size", "9g", IMAGE, "sleep", "1000")
        assert json.loads(ok("inspect", "ds"))[0]["config"]["disk_size"] == 9 * GIB
        for start in range(3):  # fresh (primed template), then restarts: cold, warm
            ok("start", "ds")
            out = ok("exec", "ds", "sh", "-c", "echo x >> /kept && wc -l < /kept && "
                                               "df -B1 --output=size / | tail -1")
            count, size = out.split()
            assert int(count) == start + 1
            assert grown_to(int(size), 9)
            ok("stop", "-t", "1", "ds")
        # A clone's disk is built on its source's: the same size
        ok("clone", "ds", "--name", "ds-clone")
        assert json.loads(ok("inspect", "ds-clone"))[0]["config"]["disk_size"] == 9 * GIB
        ok("start", "ds-clone")
        assert grown_to(fs_size(ok("exec", "ds-clone", *FS_SIZE)), 9)
        assert ok("exec", "ds-clone", "wc", "-l", "/kept").split()[0] == b"3"
    finally:
        bx("rm", "-f", "ds-clone")
        bx("rm", "-f", "ds")
    assert vm_processes(e2e_home) == []


def test_a_disk_smaller_than_the_image_is_refused(e2e_home: Path) -> None:
    before = ok("ps", "-a", "-q")
    proc = bx("run", "--name", "tiny", "--disk-size", "1g", IMAGE, "true")
    assert proc.returncode == 125
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith("boxlite: --disk-size 1024 MiB is smaller than the disk of "
                               f"{IMAGE}"), lines
    assert lines[1].startswith("  hint: give at least that, e.g. --disk-size ")
    assert ok("ps", "-a", "-q") == before
    assert not (e2e_home / "names" / "tiny").exists()
    # ... and the name is free
    assert bx("create", "--name", "tiny", IMAGE, "true").returncode == 0
    ok("rm", "tiny")
