"""A box's root working against the host or its own guest agent: through the VM's serial
console (the console log stays bounded, and what the guest writes there reaches the
user's terminal only with its control characters escaped), the pids limit, and files
of its own the agent reads (a looping /etc/passwd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from boxlite_cli.shim.consolecap import CONSOLE_MAX_BYTES
from tests.e2e.conftest import IMAGE, bx, sysrq

pytestmark = pytest.mark.e2e

SERIAL = "mknod /tmp/ttyS0 c 4 64"  # (root in a box may make the node of the VM's serial port)


def test_a_console_flood_from_the_box_stays_bounded_on_the_host(e2e_home: Path) -> None:
    flood = f"{SERIAL} && head -c {CONSOLE_MAX_BYTES * 2} /dev/zero | tr '\\0' x > /tmp/ttyS0"
    run = bx("run", "--name", "flooder", IMAGE, "sh", "-c", flood, timeout=600)
    try:
        assert run.returncode == 0, run.stderr
        box_id = bx("inspect", "-f", "{{.Id}}", "flooder").stdout.decode().strip()
        console = e2e_home / "boxes" / box_id / "console.log"
        size = console.stat().st_size
        assert size < CONSOLE_MAX_BYTES + (1 << 20), size  # (checked once a second)
        # (near the start: what the VM appended during the cut may come before it)
        assert b"[boxlite: the console log passed" in console.read_bytes()[:1 << 20]
    finally:
        bx("rm", "-f", "flooder")


def test_the_guests_console_text_is_escaped_in_the_error_line(e2e_home: Path) -> None:
    fake = "boxlite-init: the agent exited (\\033]0;PWNED\\007\\033[1;32mOK: all good)"
    script = (f"{SERIAL} && printf '{fake}\\n' > /tmp/ttyS0 && sleep 1 && "
              f"{sysrq('o')}; sleep 30")
    run = bx("run", "--rm", IMAGE, "sh", "-c", script, timeout=300)
    assert run.returncode == 125, run.stderr
    assert b"\x1b" not in run.stderr and b"\x07" not in run.stderr
    assert b"the guest agent ended (\\x1b]0;PWNED\\x07\\x1b[1;32mOK: all good)" in run.stderr


def test_a_guest_kernel_panic_is_reported_as_one(e2e_home: Path) -> None:
    run = bx("run", "--rm", IMAGE, "sh", "-c", f"{sysrq('c')}; sleep 30", timeout=300)
    assert run.returncode == 125, run.stderr
    assert (b'the guest kernel panicked; its console says: "sysrq triggered crash"'
            in run.stderr), run.stderr


FORKS = """
import os, time
started = 0
for _ in range(40):
    try:
        pid = os.fork()
    except BlockingIOError:  # EAGAIN: the box's pids limit
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    started += 1
print(started)
"""


def test_the_pids_limit_holds_for_the_whole_box(e2e_home: Path) -> None:
    """--pids-limit N: the box's processes and threads at most (its cgroup's pids.max);
    the main process counts, so it starts N - 1 more. The default is 4096."""
    run = bx("run", "--name", "forky", "--pids-limit", "20", IMAGE, "python3", "-c", FORKS,
             timeout=300)
    try:
        assert run.returncode == 0, run.stderr
        assert run.stdout == b"19\n"
        assert bx("inspect", "-f", "{{.HostConfig.PidsLimit}}", "forky").stdout == b"20\n"
    finally:
        bx("rm", "-f", "forky")
    created = bx("create", "--name", "unlimited", "--pids-limit", "-1", IMAGE, "true")
    try:
        assert created.returncode == 0, created.stderr
        assert bx("inspect", "-f", "{{.HostConfig.PidsLimit}}", "unlimited").stdout == b"0\n"
    finally:
        bx("rm", "-f", "unlimited")


def test_a_fractional_cpus_limits_the_box_and_the_box_reads_its_limits() -> None:
    """--cpus 0.5 (docker's): one vCPU, and the box's cgroup gets half a CPU's time
    (cpu.max); the box reads its limits in a read-only /sys/fs/cgroup, its own group
    there and in /proc/self/cgroup (its namespace's root), as in docker; an exec too."""
    script = ("nproc; cat /proc/self/cgroup /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max;"
              " echo 1 > /sys/fs/cgroup/pids.max || echo read-only;"
              " echo '|/x' > /proc/sys/kernel/core_pattern || echo proc-sys-read-only")
    half = bx("run", "--rm", "--cpus", "0.5", IMAGE, "sh", "-c", script)
    assert half.returncode == 0, half.stderr
    assert half.stdout.decode().split("\n")[:6] == ["1", "0::/", "50000 100000", "4096",
                                                    "read-only", "proc-sys-read-only"]
    try:
        assert bx("run", "-d", "--name", "limits", IMAGE, "sleep", "600").returncode == 0
        seen = bx("exec", "limits", "sh", "-c", "cat /proc/self/cgroup /sys/fs/cgroup/pids.max;"
                  " cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo none")
        # (no --cpus fraction asked: no cpu controller, no cpu.max)
        assert seen.stdout == b"0::/\n4096\nnone\n", seen.stderr
    finally:
        bx("rm", "-f", "limits")


def test_a_passwd_whose_path_loops_leaves_numeric_users_working() -> None:
    """The box makes its /etc/passwd a symlink to itself: a numeric user needs no passwd
    file (exec still works), a name is not found, in docker's words."""
    assert bx("run", "-d", "--name", "pwloop", IMAGE, "sleep", "600").returncode == 0
    try:
        looped = bx("exec", "pwloop", "sh", "-c", "rm /etc/passwd; ln -s /etc/passwd /etc/passwd")
        assert looped.returncode == 0, looped.stderr
        for user, uid in (("0", b"0\n"), ("1000:1000", b"1000\n")):
            seen = bx("exec", "-u", user, "pwloop", "id", "-u")
            assert (seen.returncode, seen.stdout) == (0, uid), seen.stderr
        named = bx("exec", "-u", "nobody", "pwloop", "true")
        assert named.returncode == 126  # (docker's exec: cannot be started)
        assert b"unable to find user nobody: no matching entries in passwd file" in named.stderr
    finally:
        bx("rm", "-f", "pwloop")


ESCAPE_AND_INIT = r'''
import os
os.makedirs("/tmp/x", exist_ok=True)
fd = os.open("/", os.O_RDONLY)
os.chroot("/tmp/x")  # (the classic escape from a chroot: root keeps SYS_CHROOT here)
os.fchdir(fd)
for _ in range(60):
    os.chdir("..")
os.chroot(".")
os.execv("/usr/bin/python3", ["python3", "-c", """
import sys; sys.path.insert(0, "/opt/boxlite/lib")
import grpc
from boxlite_agent.pb import agent_pb2 as pb, agent_pb2_grpc as g
stub = g.AgentStub(grpc.insecure_channel("unix:/run/boxlite/agent.sock"))
stub.Init(pb.InitRequest(cap_drop=0, pids_limit=0))
"""])
'''


def test_dropped_capabilities_stay_dropped_for_a_box_that_reaches_its_agent() -> None:
    """Root in a box run with --cap-drop (SYS_CHROOT kept) that climbs out of its root
    and sends its agent an Init that would lift the limits is refused; the box's PID 1
    holds no capability to take over either."""
    assert bx("run", "-d", "--name", "climber", "--cap-drop", "NET_RAW", IMAGE,
              "sleep", "600").returncode == 0
    try:
        written = bx("exec", "-i", "climber", "sh", "-c", "cat > /tmp/climb.py",
                     input=ESCAPE_AND_INIT.encode())
        assert written.returncode == 0, written.stderr
        climbed = bx("exec", "climber", "python3", "/tmp/climb.py")
        assert climbed.returncode != 0
        assert b"its limits stay" in climbed.stderr, climbed.stderr
        bounding = bx("exec", "climber", "grep", "-E", "^(CapBnd|NoNewPrivs)",
                      "/proc/self/status", "/proc/1/status")
        assert bounding.stdout.decode().splitlines() == [
            "/proc/self/status:CapBnd:\t000001ffffffdfff", "/proc/self/status:NoNewPrivs:\t0",
            "/proc/1/status:CapBnd:\t0000000000000000", "/proc/1/status:NoNewPrivs:\t1"]
    finally:
        bx("rm", "-f", "climber")
