"""Health checks (--health-*): run in a real box by its shim, shown by ps and inspect."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import IMAGE, bx

# Fails until /tmp/ok exists; hangs past its timeout while /tmp/hang does.
CHECK = ("if [ -e /tmp/hang ]; then echo hanging; sleep 60; fi; "
         "test -e /tmp/ok && echo fine || { echo not yet >&2; exit 1; }")


def health_of(box: str) -> dict[str, Any]:
    shown = bx("inspect", "-f", "{{json .State.Health}}", box)
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def await_health(box: str, ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The box's health once `ok` holds (a check a second: well within the bound)."""
    deadline = time.monotonic() + 120
    while not ok(health := health_of(box)):
        assert time.monotonic() < deadline, health
        time.sleep(0.5)
    return health


def listed(health: str) -> list[str]:
    return bx("ps", "-q", "--filter", f"health={health}").stdout.decode().split()


def test_a_box_turns_unhealthy_heals_and_a_hung_check_times_out() -> None:
    run = bx("run", "-d", "--name", "checked", "--health-cmd", CHECK, "--health-interval", "1s",
             "--health-timeout", "2s", "--health-retries", "2", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    box = run.stdout.decode().strip()[:12]
    try:
        sick = await_health("checked", lambda h: h["Status"] == "unhealthy")
        assert sick["FailingStreak"] >= 2
        assert sick["Log"][-1]["ExitCode"] == 1 and sick["Log"][-1]["Output"] == "not yet\n"
        assert box in listed("unhealthy") and box not in listed("healthy")
        assert "(unhealthy)" in bx("ps").stdout.decode()

        assert bx("exec", "checked", "touch", "/tmp/ok").returncode == 0
        well = await_health("checked", lambda h: h["Status"] == "healthy")
        assert well["FailingStreak"] == 0 and well["Log"][-1]["Output"] == "fine\n"
        assert box in listed("healthy") and "(healthy)" in bx("ps").stdout.decode()
        assert len(well["Log"]) <= 5

        assert bx("exec", "checked", "touch", "/tmp/hang").returncode == 0
        hung = await_health("checked", lambda h: h["Log"][-1]["ExitCode"] == -1)
        assert hung["Log"][-1]["Output"] == "Health check exceeded timeout (2s): hanging\n"
        # (the timed-out check was killed: no `sleep 60` piles up in the box)
        top = bx("top", "checked").stdout.decode()
        assert top.count("sleep 60") <= 1, top

        assert bx("stop", "-t", "1", "checked").returncode == 0
        stopped = json.loads(bx("inspect", "checked").stdout)[0]["State"]
        assert stopped["Status"] == "exited" and stopped["Health"]["Status"] in (
            "healthy", "unhealthy")  # (kept as it was, as docker keeps it)
        assert "health" not in bx("ps", "-a", "--filter", "name=^checked$").stdout.decode()
    finally:
        bx("rm", "-f", "checked")


def test_a_box_without_a_check_has_no_health() -> None:
    run = bx("run", "-d", "--name", "unchecked", "--no-healthcheck", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    try:
        state = json.loads(bx("inspect", "unchecked").stdout)[0]
        assert "Health" not in state["State"]
        assert state["Config"]["Healthcheck"] == {"Test": ["NONE"]}  # (docker's)
        assert run.stdout.decode()[:12] in listed("none")
    finally:
        bx("rm", "-f", "unchecked")


def test_a_box_resumed_from_a_checkpoint_taken_mid_check_checks_on() -> None:
    """The check that ran when the checkpoint was taken comes back with the VM: it is
    ended, not left to block the resumed box's own checks (which failed, "exec
    healthcheck already exists", and made it unhealthy)."""
    run = bx("run", "-d", "--name", "midcheck", "--health-cmd", "sleep 3; echo ok",
             "--health-interval", "1s", "--health-timeout", "30s", "--health-retries", "1",
             IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    try:
        await_health("midcheck", lambda h: bool(h["Log"]))
        deadline = time.monotonic() + 60
        while "sleep 3" not in bx("top", "midcheck").stdout.decode():  # (one runs now)
            assert time.monotonic() < deadline
            time.sleep(0.2)
        made = bx("snapshot", "create", "--memory", "midcheck", "mid")
        assert made.returncode == 0, made.stderr
        resumed = bx("run", "-d", "--name", "resumed", "--from", "midcheck:mid")
        assert resumed.returncode == 0, resumed.stderr
        health = await_health("resumed", lambda h: h["Status"] != "starting")
        assert health["Status"] == "healthy", health
        assert not [r for r in health["Log"] if "already exists" in r["Output"]], health
    finally:
        bx("rm", "-f", "resumed")
        bx("rm", "-f", "midcheck")
