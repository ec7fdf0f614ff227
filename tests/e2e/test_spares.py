"""Spare VMs (runtime/spares.py): a warm start leaves a restored, warmed-up, paused VM
of its template, which the next fresh box of that template takes. Real VMs, the real
agent, the real `boxlite`; each test stops the spares it made."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from boxlite_cli.runtime.spares import Spares
from boxlite_cli.shim.spareclaim import adopt_socket
from tests.e2e.conftest import IMAGE, boxlite_bin, bx, vm_processes

READY_WITHIN_S = 120.0  # a spare's restore and warm-up, on a busy emulated host
PROBE = ("hostname; cat /proc/sys/kernel/random/uuid; head -c16 /dev/urandom | od -An -tx1 "
         "| tr -d ' \\n'; echo; date +%s.%N")


def spare_dirs(home: Path) -> list[Path]:
    root = home / "spares"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def wait_for_spare(home: Path, other_than: Collection[Path] = ()) -> Path:
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        ready = [d for d in spare_dirs(home) if d not in other_than and adopt_socket(d).exists()]
        if ready:
            return ready[0]
        time.sleep(0.1)
    raise AssertionError(f"no spare got ready within {READY_WITHIN_S:.0f} s: {spare_dirs(home)}")


def spare_processes(home: Path) -> list[str]:
    return [p for p in vm_processes(home) if "--spare" in p or "/spares/" in p]


@pytest.fixture
def spares(e2e_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("BOXLITE_SPARES", "1")
    monkeypatch.setenv("BOXLITE_SPARE_IDLE_S", "300")
    bx("run", "--rm", IMAGE, "true")  # the template (a cold start saves it, if none yet)
    yield e2e_home
    Spares(e2e_home / "spares").stop_all(wait_s=30)
    assert spare_processes(e2e_home) == []
    assert spare_dirs(e2e_home) == []


def box_dir(home: Path, name: str) -> Path:
    box_id = bx("inspect", name, "--format", "{{.Id}}").stdout.decode().strip()
    return home / "boxes" / box_id


def took_a_spare(home: Path, name: str) -> bool:
    return "took over a spare VM" in (box_dir(home, name) / "shim.log").read_text()


def test_fresh_boxes_take_spares_and_each_is_its_own(spares: Path) -> None:
    """The spare's guest was restored and warmed before the box existed: the box still
    gets its own hostname, clock and entropy (as after any restore); it keeps running,
    stops and starts again as any box."""
    bx("run", "--rm", IMAGE, "true")  # a warm start: it leaves a spare
    seen: list[list[str]] = []
    used: set[Path] = set()
    for name in ("spare-a", "spare-b"):
        spare = wait_for_spare(spares, other_than=used)
        used.add(spare)
        info = json.loads(bx("info", "--format", "json").stdout)
        assert info["spares"] == {"ready": 1, "total": 1}
        result = bx("run", "-d", "--name", name, IMAGE, "sleep", "600")
        assert result.returncode == 0, result.stderr
        assert took_a_spare(spares, name)
        assert not spare.exists()  # its files are the box's now
        before = time.time()
        probe = bx("exec", name, "sh", "-c", PROBE)
        after = time.time()
        assert probe.returncode == 0, probe.stderr
        hostname, uuid, random_bytes, clock = probe.stdout.decode().split()
        box_id = box_dir(spares, name).name
        assert hostname == box_id[:12]
        assert before - 1 <= float(clock) <= after + 1
        seen.append([uuid, random_bytes])
    assert seen[0][0] != seen[1][0] and seen[0][1] != seen[1][1]
    # Its disk and sockets moved into the box: a consistent snapshot of it works too.
    snap = bx("snapshot", "create", "spare-a", "s1")
    assert snap.returncode == 0, snap.stderr
    assert b"s1" in bx("snapshot", "ls", "spare-a").stdout
    # ... and a memory checkpoint (QEMU reopens the disk for it: not by the spare's path)
    checkpoint = bx("snapshot", "create", "--memory", "spare-a", "m1")
    assert checkpoint.returncode == 0, checkpoint.stderr
    assert bx("exec", "spare-a", "true", timeout=60).returncode == 0  # it runs on
    assert bx("stop", "spare-a").returncode == 0
    assert bx("start", "spare-a").returncode == 0
    again = bx("exec", "spare-a", "hostname")
    assert again.stdout.decode().strip() == box_dir(spares, "spare-a").name[:12]
    assert bx("rm", "-f", "spare-a", "spare-b").returncode == 0


def test_two_runs_race_for_one_spare(spares: Path) -> None:
    bx("run", "--rm", IMAGE, "true")
    wait_for_spare(spares)
    env = {**os.environ}
    runs = [subprocess.Popen([boxlite_bin(), "run", "--rm", IMAGE, "hostname"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    hostnames = {out.decode().strip() for out, _ in outputs}
    assert len(hostnames) == 2


def test_a_box_with_published_ports_starts_without_the_spare(spares: Path) -> None:
    bx("run", "--rm", IMAGE, "true")
    spare = wait_for_spare(spares)
    result = bx("run", "--name", "spare-ports", "-p", "127.0.0.1::80", IMAGE, "true")
    assert result.returncode == 0, result.stderr
    assert not took_a_spare(spares, "spare-ports")
    assert adopt_socket(spare).exists()  # still there for the next box
    bx("rm", "-f", "spare-ports")


def test_a_dead_spare_is_passed_over_and_an_unused_one_goes(spares: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    bx("run", "--rm", IMAGE, "true")
    spare = wait_for_spare(spares)
    pid = json.loads((spare / "shim.pid").read_text())["pid"]
    os.kill(pid, signal.SIGSTOP)  # stuck: it cannot answer a claim (the kernel accepts it)
    try:
        result = bx("run", "--rm", IMAGE, "echo", "ok")
        assert (result.returncode, result.stdout) == (0, b"ok\n"), result.stderr
    finally:
        os.kill(pid, signal.SIGCONT)
    os.kill(pid, signal.SIGKILL)  # its VM dies with it; its directory stays behind
    result = bx("run", "--rm", IMAGE, "echo", "ok")
    assert (result.returncode, result.stdout) == (0, b"ok\n"), result.stderr
    # A spare nobody takes goes by itself, VM, directory and all.
    Spares(spares / "spares").stop_all(wait_s=30)  # (the one that run left, and the dead one's)
    monkeypatch.setenv("BOXLITE_SPARE_IDLE_S", "1")
    bx("run", "--rm", IMAGE, "true")
    [short] = [d for d in spare_dirs(spares) if d != spare]
    deadline = time.monotonic() + READY_WITHIN_S
    while short.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not short.exists()
    assert [p for p in spare_processes(spares) if short.name in p] == []


def test_spares_can_be_turned_off(e2e_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_SPARES", "0")
    bx("run", "--rm", IMAGE, "true")
    result = bx("run", "--rm", IMAGE, "true")  # warm: it would leave one
    assert result.returncode == 0
    assert spare_dirs(e2e_home) == []
