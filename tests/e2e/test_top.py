"""boxlite top: the box's processes by their PIDs in the box, from the guest kernel."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, bx, vm_processes

pytestmark = pytest.mark.e2e


def test_top_lists_the_boxs_processes(e2e_home: Path) -> None:
    started = bx("run", "-d", "--name", "busy", IMAGE, "sh", "-c", "sleep 600 & exec sleep 700")
    assert started.returncode == 0, started.stderr
    try:
        assert bx("exec", "-d", "-u", "nobody", "busy", "sleep", "800").returncode == 0
        assert bx("exec", "-d", "busy", "unshare", "--pid", "--fork", "sleep", "900").returncode == 0
        deadline = time.monotonic() + 30
        while True:  # (the detached exec and the main's child come up on their own)
            listed = json.loads(bx("top", "busy", "--format", "json").stdout)
            commands = {" ".join(p["command"]): p for p in listed}
            if ({"sleep 600", "sleep 800", "sleep 900"} <= commands.keys()
                    or time.monotonic() > deadline):
                break
            time.sleep(0.2)
        init, main = commands["boxlite-init"], commands["sleep 700"]
        assert init["pid"] == 1 and init["ppid"] == 0
        assert main["ppid"] == 0 and main["user"] == "root"  # (its parent is the agent's)
        assert commands["sleep 600"]["ppid"] == main["pid"]
        assert commands["sleep 800"]["user"] == "nobody" and commands["sleep 800"]["uid"] == 65534
        # in a PID namespace of its own inside the box: listed, by its PID in the box
        unshare = commands["unshare --pid --fork sleep 900"]
        assert commands["sleep 900"]["ppid"] == unshare["pid"] > 1
        assert abs(main["started_at"] - time.time()) < 120  # the guest's clock is the host's
        assert all(p["rss_bytes"] > 0 and p["state"] in "RS" for p in listed)
        assert len(listed) == 6  # nothing of the guest's own (agent, init) is listed

        table = bx("top", "busy").stdout.decode().splitlines()
        assert table[0].split() == ["PID", "PPID", "USER", "STAT", "TIME", "RSS", "STIME",
                                    "COMMAND"]
        assert any(line.split()[2] == "nobody" and line.endswith("sleep 800") for line in table)

        assert bx("stop", "-t", "1", "busy").returncode == 0
        stopped = bx("top", "busy")
        assert stopped.returncode == 125
        assert stopped.stderr.decode().splitlines()[0] == "boxlite: box busy is not running"
    finally:
        bx("rm", "-f", "busy")
    assert vm_processes(e2e_home) == []
