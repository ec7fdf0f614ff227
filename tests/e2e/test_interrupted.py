"""The CLI killed at the worst moment, and `ps` while boxes come and go."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin, bx, vm_processes

pytestmark = pytest.mark.e2e
STATUSES = {"creating", "created", "starting", "running", "stopping", "exited"}


def ps_all() -> list[dict[str, object]]:
    proc = bx("ps", "-a", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    boxes: list[dict[str, object]] = json.loads(proc.stdout)
    return boxes


@pytest.mark.parametrize("delay_s", [0.3, 0.8, 1.5])
def test_create_killed_midway_is_complete_or_failed_and_removable(delay_s: float) -> None:
    name = f"k9-{int(delay_s * 10)}"
    proc = subprocess.Popen([boxlite_bin(), "create", "--name", name, IMAGE, "true"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mine = [b for b in ps_all() if b["name"] == name]
    assert len(mine) <= 1
    if mine:
        box = mine[0]
        if box["status"] == "created":
            disk = json.loads(bx("inspect", name).stdout)[0]["paths"]["rootfs_disk"]
            assert Path(disk).is_file()  # complete
        else:
            assert box["status"] == "exited" and box["error"], box  # shown as failed
        assert bx("rm", "-f", name).returncode == 0
    assert not [b for b in ps_all() if b["name"] == name]
    assert bx("create", "--name", name, IMAGE, "true").returncode == 0  # the name is free again
    assert bx("rm", name).returncode == 0


def test_run_survives_its_cli_being_killed(e2e_home: Path) -> None:
    proc = subprocess.Popen([boxlite_bin(), "run", "--name", "orphan", IMAGE, "sleep", "600"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if [b for b in ps_all() if b["name"] == "orphan" and b["status"] == "running"]:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Like a docker container whose client went away: still running and usable.
        assert [b["status"] for b in ps_all() if b["name"] == "orphan"] == ["running"]
        assert bx("exec", "orphan", "echo", "still here").stdout == b"still here\n"
    finally:
        assert bx("rm", "-f", "orphan").returncode == 0
    assert not [p for p in vm_processes(e2e_home) if "orphan" in p]


def test_ps_never_fails_while_boxes_start_and_stop() -> None:
    runs = [subprocess.Popen([boxlite_bin(), "run", "--rm", IMAGE, "sh", "-c", f"sleep {i}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for i in range(3)]
    seen: set[str] = set()
    while any(r.poll() is None for r in runs):
        for box in ps_all():
            assert box["status"] in STATUSES
            assert isinstance(box["id"], str) and len(box["id"]) == 64
            seen.add(str(box["status"]))
    for r in runs:
        assert r.wait() == 0, r.stderr.read() if r.stderr else b""
    assert "running" in seen
