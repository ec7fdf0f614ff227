"""export → import → start, clones that diverge, and a CLI killed mid-export, with real VMs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin, bx, vm_processes

pytestmark = pytest.mark.e2e


def ok(*args: str, timeout: float = 300) -> bytes:
    proc = bx(*args, timeout=timeout)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout


def started_box(name: str) -> str:
    box_id = ok("create", "--name", name, IMAGE, "sleep", "3600").decode().strip()
    ok("start", name)
    return box_id


def snapshot_list(box: str) -> list[dict[str, object]]:
    listing: list[dict[str, object]] = json.loads(ok("snapshot", "ls", "--format", "json", box))
    return listing


def test_export_import_roundtrip(e2e_home: Path, tmp_path: Path) -> None:
    archive = tmp_path / "box.bx"
    try:
        started_box("ex-src")
        ok("exec", "ex-src", "sh", "-c", "echo from-the-original > /root/marker")
        out = bx("export", "ex-src", "-o", str(archive))  # running: quiesced by a snapshot
        assert out.returncode == 0, out.stderr
        assert archive.is_file() and out.stdout == b""  # (quiet with -o, as docker's)
        again = bx("export", "ex-src", "-o", str(archive))
        assert again.returncode == 125 and b"already exists" in again.stderr
        assert ok("exec", "ex-src", "cat", "/root/marker") == b"from-the-original\n"

        piped = subprocess.run(f"{boxlite_bin()} export ex-src -o - | "
                               f"{boxlite_bin()} import - --name ex-pipe", shell=True,
                               capture_output=True, timeout=300)
        assert piped.returncode == 0, piped.stderr
        assert not (Path.cwd() / "-").exists()
        ok("rm", "ex-pipe")
        new_id = ok("import", str(archive), "--name", "ex-imp").decode().strip()
        assert len(new_id) == 64
        clash = bx("import", str(archive), "--name", "ex-imp")
        assert clash.returncode == 125 and b"already in use" in clash.stderr
        ok("start", "ex-imp")
        assert ok("exec", "ex-imp", "cat", "/root/marker") == b"from-the-original\n"
        ok("exec", "ex-imp", "sh", "-c", "echo imported-only > /root/marker")
        assert ok("exec", "ex-src", "cat", "/root/marker") == b"from-the-original\n"
    finally:
        bx("rm", "-f", "ex-imp", "ex-pipe")
        bx("rm", "-f", "ex-src")
    assert vm_processes(e2e_home) == []
    assert list((e2e_home / "staging").iterdir()) == []


def test_clones_diverge_and_protect_their_source(e2e_home: Path) -> None:
    try:
        started_box("cl-src")
        ok("exec", "cl-src", "sh", "-c", "echo shared > /root/base")
        ids = ok("clone", "cl-src", "--name", "cl", "-n", "2").decode().split()
        assert len(ids) == 2
        ok("start", "cl")
        ok("start", "cl-2")
        ok("exec", "cl", "sh", "-c", "echo one > /root/only-1")
        ok("exec", "cl-2", "sh", "-c", "echo two > /root/only-2")
        for box in ("cl", "cl-2"):
            assert ok("exec", box, "cat", "/root/base") == b"shared\n"
        assert bx("exec", "cl", "test", "-e", "/root/only-2").returncode == 1
        assert bx("exec", "cl-2", "test", "-e", "/root/only-1").returncode == 1
        assert ok("exec", "cl-src", "ls", "/root").split() == [b"base"]

        refused = bx("rm", "-f", "cl-src")
        assert refused.returncode == 125
        assert b"cl, cl-2" in refused.stderr and b"built on its snapshots" in refused.stderr
        assert ok("exec", "cl-src", "cat", "/root/base") == b"shared\n"
        assert [s["name"][:6] for s in snapshot_list("cl-src")] == ["clone-"]
        ok("rm", "-f", "cl", "cl-2")
        assert snapshot_list("cl-src") == []  # the clones' base went with the last of them
        ok("rm", "-f", "cl-src")
    finally:
        bx("rm", "-f", "cl", "cl-2")
        bx("rm", "-f", "cl-src")
    assert vm_processes(e2e_home) == []


def test_a_snapshot_under_a_running_clone_is_kept_until_the_clone_stops() -> None:
    """Removing a snapshot rewrites the layers above it; a clone running on them holds
    them: the removal is refused in one line naming the clone, and works once it stops."""
    try:
        ok("create", "--name", "lay-src", IMAGE, "sleep", "3600")
        ok("snapshot", "create", "lay-src", "s1")
        ok("snapshot", "create", "lay-src", "s2")
        clone_id = ok("clone", "lay-src", "--name", "lay-clone").decode().strip()
        ok("start", "lay-clone")
        refused = bx("snapshot", "rm", "lay-src", "s1")
        assert refused.returncode == 125
        assert refused.stderr.decode().splitlines()[0] == (
            "boxlite: snapshot 's1' cannot be removed now: a running box reads the disks "
            f"built on it ({clone_id[:12]})")
        assert [s["name"] for s in snapshot_list("lay-src")][:2] == ["s1", "s2"]
        ok("stop", "-t", "0", "lay-clone")
        ok("snapshot", "rm", "lay-src", "s1")
        ok("start", "lay-clone")  # (its disk reads the same as before)
    finally:
        bx("rm", "-f", "lay-clone")
        bx("rm", "-f", "lay-src")


def test_kill_during_export_leaves_the_box_usable(e2e_home: Path, tmp_path: Path) -> None:
    archive = tmp_path / "big.bx"
    staging = e2e_home / "staging"
    try:
        started_box("ex-big")
        ok("exec", "ex-big", "sh", "-c", "head -c 200M /dev/urandom > /root/big && "
                                         "echo still-here > /root/small", timeout=600)
        proc = subprocess.Popen([boxlite_bin(), "export", "ex-big", "-o", str(archive)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            flat = list(staging.glob("export-*/rootfs.qcow2")) if staging.exists() else []
            if flat and flat[0].stat().st_size > 64 << 20:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the export finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not archive.exists()
        assert [p for p in tmp_path.iterdir() if "boxlite" in p.name] == []

        assert ok("exec", "ex-big", "cat", "/root/small") == b"still-here\n"
        ok("stop", "-t", "1", "ex-big")
        ok("start", "ex-big")
        assert ok("exec", "ex-big", "cat", "/root/small") == b"still-here\n"
        ok("stop", "-t", "1", "ex-big")
        finished = bx("export", "ex-big", "-o", str(archive), timeout=600)  # cleans the stale stage
        assert finished.returncode == 0, finished.stderr
        assert list(staging.iterdir()) == []
        assert snapshot_list("ex-big") == []  # nor is the killed export's copy left
        assert archive.stat().st_size > 150 << 20  # urandom does not compress
    finally:
        bx("rm", "-f", "ex-big")
    assert vm_processes(e2e_home) == []
