"""Many invocations at once, from separate processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin, bx, vm_processes

pytestmark = pytest.mark.e2e


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([boxlite_bin(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def test_eight_runs_at_once() -> None:
    procs = [start("run", "--rm", IMAGE, "sh", "-c", f"echo box{i}; exit {i}") for i in range(8)]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == i, err
        assert out == f"box{i}\n".encode()


def test_sixteen_execs_at_once_into_one_box() -> None:
    assert bx("run", "-d", "--name", "busy", IMAGE, "sleep", "600").returncode == 0
    try:
        procs = [start("exec", "busy", "sh", "-c", f"echo exec{i}; exit {i}")
                 for i in range(16)]
        for i, proc in enumerate(procs):
            out, err = proc.communicate(timeout=300)
            assert (proc.returncode, out) == (i, f"exec{i}\n".encode()), err
    finally:
        bx("rm", "-f", "busy")


def test_restarts_from_three_shells_take_turns_and_all_succeed() -> None:
    """Each is a whole stop and start (docker's); none finds the box started by another
    ("already running") or stopped under its start."""
    assert bx("run", "-d", "--name", "turns", IMAGE, "sleep", "600").returncode == 0
    try:
        procs = [start("restart", "-t", "0", "turns") for _ in range(3)]
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            assert (proc.returncode, out) == (0, b"turns\n"), err
        assert json.loads(bx("inspect", "turns").stdout)[0]["status"] == "running"
    finally:
        bx("rm", "-f", "turns")


def test_execs_during_another_shells_restart_wait_for_it() -> None:
    """Between the stop and the start of a `restart`, an exec waits for the box to run
    again: it said "not running, start it". (One in flight when the stop came is killed
    with the box: 137, as docker's.)"""
    assert bx("run", "-d", "--name", "bounce", IMAGE, "sleep", "600").returncode == 0
    try:
        restarts = start("restart", "-t", "0", "bounce")
        results = []
        while restarts.poll() is None:
            results.append(bx("exec", "bounce", "true", timeout=600))
        assert restarts.returncode == 0, restarts.communicate()[1]
        results.append(bx("exec", "bounce", "true"))
        refused = [r.stderr for r in results if r.returncode not in (0, 137)]
        assert refused == [], refused
        assert results[-1].returncode == 0
    finally:
        bx("rm", "-f", "bounce")


def test_two_creates_of_one_name_exactly_one_wins() -> None:
    procs = [start("create", "--name", "taken", IMAGE, "true") for _ in range(2)]
    results = [(p.communicate(timeout=300), p.returncode) for p in procs]
    try:
        codes = sorted(code for _, code in results)
        assert codes == [0, 125]
        loser = next(err for (_, err), code in results if code == 125)
        assert b'the name "taken" is already in use' in loser
        assert len([line for line in bx("ps", "-a").stdout.splitlines() if b"taken" in line]) == 1
    finally:
        bx("rm", "-f", "taken")


def wait_for_status(home: Path, name: str, status: str, timeout: float = 120) -> bool:
    """Poll the box's state file (no CLI start-up in the way) until it shows `status`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link = home / "names" / name
        with contextlib.suppress(OSError, ValueError):
            state = json.loads((home / "boxes" / os.readlink(link) / "state.json").read_text())
            if state["status"] == status:
                return True
        time.sleep(0.005)
    return False


def templates(home: Path) -> list[str]:
    root = home / "cache" / "templates"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@pytest.mark.parametrize("verb", ["stop", "rm"])
def test_a_stop_or_rm_during_a_warm_start_is_no_failure_of_the_template(
        verb: str, e2e_home: Path) -> None:
    """`stop` (or `rm -f`) from another shell while a box starts warm: the start ends,
    the box is not left running, and the shared template stays (it used to be taken
    for a failed warm start: discarded, and the box started again cold)."""
    assert bx("run", "--rm", IMAGE, "true").returncode == 0  # a template for the others
    kept = templates(e2e_home)
    assert kept
    try:
        run = start("run", "-d", "--name", "halted", IMAGE, "sleep", "600")
        assert wait_for_status(e2e_home, "halted", "starting")
        halt = bx("stop", "halted") if verb == "stop" else bx("rm", "-f", "halted")
        _, err = run.communicate(timeout=300)
        assert halt.returncode == 0, halt.stderr
        assert b"starting cold" not in err and b"discarding" not in err
        if run.returncode != 0:  # (the stop came while it started, as meant)
            assert err.decode().strip().splitlines()[-1] in (
                "boxlite: box halted was stopped while it was starting",
                "  hint: a boxlite stop, kill or rm -f of it came meanwhile",
                "boxlite: no such box: halted"
            ) or " was removed while it was starting" in err.decode(), err
        ps = json.loads(bx("ps", "-a", "--format", "json").stdout)
        assert [b["status"] for b in ps if b["name"] == "halted"] in ([], ["exited"])
        assert templates(e2e_home) == kept
    finally:
        bx("rm", "-f", "halted")
    assert vm_processes(e2e_home) == []
