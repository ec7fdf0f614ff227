"""pause / unpause: the VM really stops, what needs the guest is refused with the fix,
the clock is set again on unpause, and stop, restart and kill work on a paused box."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.vmm.qmp import Qmp
from tests.e2e.conftest import IMAGE, assert_clock_is_the_hosts, bx, vm_processes

pytestmark = pytest.mark.e2e


def vm_state(home: Path, box_id: str) -> str:
    """QEMU's own run state of the box's VM (running, paused, ...)."""
    launch = Launch.load(home / "boxes" / box_id / "vm.json")
    return str(Qmp(launch.vm.control_socket).info()["state"])


def test_pause_stops_the_vm_until_unpause(e2e_home: Path) -> None:
    started = bx("run", "-d", "--name", "napper", IMAGE, "sleep", "600")
    assert started.returncode == 0, started.stderr
    box_id = started.stdout.decode().strip()
    try:
        paused = bx("pause", "napper")
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout == b"napper\n"
        assert vm_state(e2e_home, box_id) == "paused"
        assert "(Paused)" in bx("ps").stdout.decode()
        listed = {b["name"]: b for b in json.loads(bx("ps", "--format", "json").stdout)}
        assert listed["napper"]["paused"] is True
        assert bx("inspect", "-f", "{{.Status}} {{.Paused}}", "napper").stdout == b"running true\n"
        docker_view = bx("inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.State.Pid}}",
                         "napper").stdout.split()
        assert docker_view[:2] == [b"paused", b"true"]
        assert (Path("/proc") / docker_view[2].decode() / "exe").resolve().name.startswith("qemu")

        again = bx("pause", "napper")
        assert (again.returncode, again.stderr) == (125, b"boxlite: box napper is already paused\n")
        for args, doing in ((("exec", "napper", "true"), "exec in it"),
                            (("cp", "napper:/etc/hostname", "-"), "copy files"),
                            (("snapshot", "create", "napper", "s1"), "snapshot its disk"),
                            (("kill", "-s", "TERM", "napper"), "send it signal 15"),
                            (("top", "napper"), "list its processes"),
                            (("diff", "napper"), "list its changes")):
            refused = bx(*args)
            assert refused.returncode == 125, args
            first, hint = refused.stderr.decode().splitlines()
            assert first.startswith(f"boxlite: box napper is paused: cannot {doing}"), first
            assert hint == "  hint: unpause it first: boxlite unpause napper"
        assert bx("snapshot", "ls", "napper").stdout.count(b"\n") <= 1  # nothing was made

        time.sleep(3)  # the guest's clock stands still meanwhile
        assert bx("unpause", "napper").returncode == 0
        assert vm_state(e2e_home, box_id) == "running"
        guest = float(bx("exec", "napper", "date", "+%s.%N").stdout)
        assert abs(guest - time.time()) < 1.5  # set again, not 3 s behind
        assert_clock_is_the_hosts(e2e_home, box_id)  # (to within milliseconds)
        not_paused = bx("unpause", "napper")
        assert (not_paused.returncode, not_paused.stderr) == (
            125, b"boxlite: box napper is not paused\n")
    finally:
        bx("rm", "-f", "napper")


def test_stop_restart_and_kill_work_on_a_paused_box(e2e_home: Path) -> None:
    started = bx("run", "-d", "--name", "frozen", IMAGE, "sleep", "600")
    assert started.returncode == 0, started.stderr
    box_id = started.stdout.decode().strip()
    try:
        stopping = e2e_home / "boxes" / box_id / "stop-requested"
        stopping.touch()  # (as a stop, restart or rm -f under way leaves it)
        refused = bx("pause", "frozen")
        assert (refused.returncode, refused.stderr) == (
            125, b"boxlite: box frozen is being stopped\n")
        stopping.unlink()
        assert bx("pause", "frozen").returncode == 0
        restarted = bx("restart", "-t", "1", "frozen")
        assert restarted.returncode == 0, restarted.stderr
        assert bx("inspect", "-f", "{{.Status}} {{.Paused}}", "frozen").stdout == b"running false\n"
        assert vm_state(e2e_home, box_id) == "running"
        assert bx("exec", "frozen", "true").returncode == 0

        assert bx("pause", "frozen").returncode == 0
        killed = bx("kill", "frozen")  # SIGKILL: continued for it
        assert killed.returncode == 0, killed.stderr
        # (docker's kill returns once the box has stopped: `kill x && rm x` works)
        assert bx("ps", "-a", "-f", "name=frozen", "--format", "{{.State}}").stdout == b"exited\n"
        assert bx("inspect", "-f", "{{.Status}} {{.ExitCode}}", "frozen").stdout == b"exited 137\n"

        assert bx("start", "frozen").returncode == 0
        assert bx("pause", "frozen").returncode == 0
        assert bx("rm", "-f", "frozen").returncode == 0
        assert not [p for p in vm_processes(e2e_home) if box_id in p]
    finally:
        bx("rm", "-f", "frozen")


@pytest.mark.parametrize("interactive", [False, True], ids=["direct", "session"])
def test_a_signal_to_an_exec_of_a_paused_box_ends_it_at_unpause(interactive: bool) -> None:
    """`timeout` fires on an exec while its box is paused: the CLI ends at once (143, with
    why), and the process gets the signal once the box is unpaused; on the exec's direct
    path and on its gRPC one (`-i`: the shim's proxy holds the signal)."""
    import select
    import signal
    import subprocess

    from tests.e2e.conftest import boxlite_bin

    assert bx("run", "-d", "--name", "held", IMAGE, "sleep", "600").returncode == 0
    proc = subprocess.Popen([boxlite_bin(), "exec", *(["-i"] if interactive else []), "held",
                             "sh", "-c", "echo ready; exec sleep 321"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        assert select.select([proc.stdout], [], [], 240)[0]
        assert proc.stdout.readline() == b"ready\n"
        assert bx("pause", "held").returncode == 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert b"the box is paused: the process gets the signal once it is unpaused" in err
        assert bx("unpause", "held").returncode == 0
        deadline = time.monotonic() + 60
        while "sleep 321" in bx("top", "held").stdout.decode():
            assert time.monotonic() < deadline, "the held signal never came"
            time.sleep(0.5)
    finally:
        proc.kill()
        bx("rm", "-f", "held")


def test_unpause_continues_a_vm_left_paused_under_a_running_box(e2e_home: Path) -> None:
    """A VM that stands paused though the box does not (a snapshot worker killed while it
    held it): every exec hung for a minute and `unpause` said "not paused"; it is the fix
    now, and the box is whole after it."""
    started = bx("run", "-d", "--name", "stuck", IMAGE, "sleep", "600")
    assert started.returncode == 0, started.stderr
    box_id = started.stdout.decode().strip()
    try:
        launch = Launch.load(e2e_home / "boxes" / box_id / "vm.json")
        Qmp(launch.vm.control_socket).pause()  # (behind boxlite's back)
        assert bx("inspect", "-f", "{{.State.Status}}", "stuck").stdout == b"running\n"
        resumed = bx("unpause", "stuck")
        assert (resumed.returncode, resumed.stdout) == (0, b"stuck\n"), resumed.stderr
        assert vm_state(e2e_home, box_id) == "running"
        assert bx("exec", "stuck", "echo", "alive", timeout=60).stdout == b"alive\n"
        again = bx("unpause", "stuck")  # (now truly not paused: said so, as before)
        assert again.returncode == 125 and b"box stuck is not paused" in again.stderr
    finally:
        bx("rm", "-f", "stuck")
