"""End-to-end fixtures: real VMs booted from the real payload, driven through `boxlite`.

Every e2e test shares one boxlite home per session (the built-in image is unpacked
once) and removes the boxes it made. The guest payload must have been built
(`make payload`, which `./dev test` runs first).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from boxlite_cli.payload import DEFAULT_IMAGE, PayloadMissing, find_payload
from boxlite_cli.state.boxfiles import BoxFiles
from boxlite_cli.state.records import BoxState
from tests.support.fixtures import *  # noqa: F403

IMAGE = DEFAULT_IMAGE


def boxlite_bin() -> str:
    return str(Path(sys.executable).with_name("boxlite"))


@pytest.fixture(scope="session")
def e2e_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    set_payload_env(os.environ)
    try:
        find_payload()
    except PayloadMissing as e:
        pytest.fail(f"the guest payload is not built ({e}); run: make payload")
    return tmp_path_factory.mktemp("e2e-home")


@pytest.fixture(autouse=True)
def _e2e_env(e2e_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BOXLITE_HOME", str(e2e_home))
    if os.environ.get("BOXLITE_TEST_PAYLOAD"):
        monkeypatch.setenv("BOXLITE_PAYLOAD", os.environ["BOXLITE_TEST_PAYLOAD"])
    else:
        monkeypatch.delenv("BOXLITE_PAYLOAD", raising=False)
    monkeypatch.setenv("BOXLITE_ACCEL", os.environ.get("BOXLITE_TEST_ACCEL", "auto"))
    # No spare VMs (runtime/spares.py) outside tests/e2e/test_spares.py: one would
    # outlive its test, and the tests that check no VM is left would see it.
    monkeypatch.setenv("BOXLITE_SPARES", "0")
    before = set(box_ids())
    yield
    check_invariants(e2e_home)
    leftovers = set(box_ids()) - before
    if leftovers:
        subprocess.run([boxlite_bin(), "rm", "-f", *leftovers], capture_output=True, timeout=120)


def check_invariants(home: Path) -> None:
    """What must hold after every e2e test, whatever it did: each box's state.json reads
    as a box record; each of the home's QEMUs runs with its seccomp sandbox on; each
    socket a CLI reaches the box's agent or shell by is the owner's alone (0600)."""
    for state in sorted((home / "boxes").glob("*/state.json")):
        try:
            BoxState.from_json(json.loads(state.read_bytes()))
        except FileNotFoundError:
            continue  # (a box removed meanwhile: its own --rm)
        except (ValueError, KeyError, TypeError) as e:
            pytest.fail(f"{state} is not a box record: {e!r}")
        files = BoxFiles(state.parent)
        for sock in (files.agent_socket, files.exec_socket):
            with contextlib.suppress(FileNotFoundError):
                mode = stat.S_IMODE(sock.stat().st_mode)
                assert mode == 0o600, f"{sock} has mode {mode:o}, not 0600"
    for cmd in vm_processes(home):
        if "qemu-system" in cmd:
            assert " -sandbox on," in cmd or cmd.endswith(" -sandbox on"), cmd


def set_payload_env(env: os._Environ[str]) -> None:
    """Boot the payload built from these sources, or `$BOXLITE_TEST_PAYLOAD` when set."""
    if env.get("BOXLITE_TEST_PAYLOAD"):
        env["BOXLITE_PAYLOAD"] = env["BOXLITE_TEST_PAYLOAD"]
    else:
        env.pop("BOXLITE_PAYLOAD", None)


def box_ids() -> list[str]:
    out = subprocess.run([boxlite_bin(), "ps", "-a", "--format", "json"], capture_output=True,
                         text=True, timeout=60, check=True)
    return [b["id"] for b in json.loads(out.stdout)]


def bx(*args: str, input: bytes | None = None, timeout: float = 300,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the real `boxlite` binary; returns the completed process (bytes)."""
    return subprocess.run([boxlite_bin(), *args], input=input, capture_output=True,
                          timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=None if input is not None else subprocess.DEVNULL)


def interruptible() -> None:
    """A child's pre-exec step: SIGINT as a terminal's Ctrl-C gives it, even where the
    tests run with it ignored (a background job of a script): an ignored SIGINT is
    inherited, and a CLI rightly keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def vm_processes(home: Path) -> list[str]:
    """Command lines of QEMU or shim processes that belong to `home`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(home) in cmd and ("qemu-system" in cmd or "boxlite_cli.shim" in cmd):
            found.append(cmd)
    return found


# What the guest's clock may be off the host's after a start: the measure that set it
# errs by at most half its round trip (a few ms); a clock set to a time sent lagged by
# the call (0.1-0.15 s for a warm start's).
CLOCK_SLACK_NS = 25_000_000


def assert_clock_is_the_hosts(e2e_home: Path, box: str) -> None:
    """The guest's clock read over its agent socket, between two readings of the
    host's (the reading of the shortest round trip of 5): within CLOCK_SLACK_NS."""
    from boxlite_cli.agent.client import AgentClient
    from boxlite_cli.agent.clocksync import read_guest_clock
    from boxlite_cli.state.boxfiles import BoxFiles

    client = AgentClient.connect(f"unix:{BoxFiles(e2e_home / 'boxes' / box).agent_socket}")
    try:
        readings = [read_guest_clock(client) for _ in range(5)]
    finally:
        client.close()
    best = min((r for r in readings if r is not None), key=lambda r: r.round_trip_ns)
    assert best.host_before_ns - CLOCK_SLACK_NS <= best.guest_ns <= \
        best.host_after_ns + CLOCK_SLACK_NS, f"the guest's clock is {best.offset_ns / 1e6} ms off"


def sysrq(key: str) -> str:
    """Shell for root in a box to write `key` to the guest's sysrq-trigger (o: power
    off, c: crash): the box's own /proc/sysrq-trigger is read-only, as runc's, but root
    keeps CAP_SYS_ADMIN by default and mounts a proc of its own."""
    return f"mkdir -p /tmp/p && mount -t proc proc /tmp/p && echo {key} > /tmp/p/sysrq-trigger"
