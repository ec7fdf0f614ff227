"""`boxlite run` end to end: real QEMU, the real guest agent, the built-in image."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin, bx, sysrq, vm_processes

pytestmark = pytest.mark.e2e


def ok(*args: str) -> bytes:
    proc = bx(*args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize(("command", "code"), [
    (["true"], 0),
    (["false"], 1),
    (["sh", "-c", "exit 7"], 7),
    (["sh", "-c", "kill -9 $$"], 137),
])
def test_exit_codes(command: list[str], code: int) -> None:
    proc = bx("run", "--rm", IMAGE, *command)
    assert proc.returncode == code, proc.stderr


def test_command_not_found_is_127() -> None:
    proc = bx("run", "--rm", IMAGE, "no-such-command-xyz")
    assert proc.returncode == 127
    assert b'"no-such-command-xyz": executable file not found in $PATH' in proc.stderr


def test_not_executable_is_126() -> None:
    proc = bx("run", "--rm", IMAGE, "/etc/passwd")
    assert proc.returncode == 126
    assert b"/etc/passwd" in proc.stderr


def test_stdout_and_stderr_arrive_separately_in_order() -> None:
    script = "for i in 1 2 3; do echo out$i; echo err$i >&2; done"
    proc = bx("run", "--name", "seps", IMAGE, "sh", "-c", script)
    try:
        assert proc.returncode == 0
        assert proc.stdout == b"out1\nout2\nout3\n"
        assert proc.stderr.count(b"err") == 3
        assert proc.stderr.index(b"err1") < proc.stderr.index(b"err2") < proc.stderr.index(b"err3")
        # A foreground run's output is in the box's log as well.
        logs = bx("logs", "seps")
        assert logs.stdout == b"out1\nout2\nout3\n"
        assert logs.stderr == b"err1\nerr2\nerr3\n"
    finally:
        bx("rm", "seps")


def test_200mb_output_is_byte_exact_and_streamed() -> None:
    size = 200 * 1024 * 1024
    # A deterministic stream we can recompute on the host.
    script = f"yes 0123456789abcdef | head -c {size}"
    expected = hashlib.sha256()
    line = b"0123456789abcdef\n"
    full, rest = divmod(size, len(line))
    block = line * 4096
    for _ in range(full // 4096):
        expected.update(block)
    expected.update(line * (full % 4096) + line[:rest])

    proc = subprocess.Popen([boxlite_bin(), "run", "--rm", IMAGE, "sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    got = hashlib.sha256()
    total = 0
    peak_kib = 0
    while chunk := proc.stdout.read(1 << 20):
        got.update(chunk)
        total += len(chunk)
        peak_kib = max(peak_kib, own_peak_kib(proc.pid))
    proc.wait()
    assert proc.returncode == 0
    assert total == size
    assert got.hexdigest() == expected.hexdigest()
    # The CLI streamed it: its peak memory stayed far below the 200 MB it passed on.
    # (VmHWM of the CLI's own address space: rusage would also count the pytest memory
    # the child had between fork and exec.)
    assert 0 < peak_kib < 150 * 1024, f"boxlite peaked at {peak_kib} KiB"


def own_peak_kib(pid: int) -> int:
    """VmHWM (peak resident set since exec) of a live process, 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_stdin_round_trip_with_eof() -> None:
    proc = bx("run", "--rm", "-i", IMAGE, "sh", "-c", "cat; echo done",
              input=b"hello\nworld\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"hello\nworld\ndone\n"


def test_env_workdir_and_user() -> None:
    proc = bx("run", "--rm", "-e", "FOO=bar baz", "-w", "/tmp", "-u", "nobody", IMAGE,
              "sh", "-c", 'echo "$FOO|$(pwd)|$(id -un)|$HOME"')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"bar baz|/tmp|nobody|/nonexistent\n"
    made = bx("run", "--rm", "-w", "/srv/new/dir", IMAGE, "pwd")  # run -w creates it
    assert (made.returncode, made.stdout) == (0, b"/srv/new/dir\n"), made.stderr


def test_env_file_and_host_env(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nA=1\n\nB=two words\n")
    proc = bx("run", "--rm", "--env-file", str(env_file), "-e", "FROM_HOST", IMAGE,
              "sh", "-c", 'echo "$A|$B|$FROM_HOST"', env={"FROM_HOST": "yes"})
    assert proc.stdout == b"1|two words|yes\n"


def test_entrypoint_override() -> None:
    proc = bx("run", "--rm", "--entrypoint", "echo", IMAGE, "hello", "world")
    assert proc.returncode == 0
    assert proc.stdout == b"hello world\n"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="a box gets at most the host's CPUs, and this host has one")
def test_cpus_and_memory() -> None:
    too_many = len(os.sched_getaffinity(0)) + 1
    refused = bx("run", "--rm", "--cpus", str(too_many), IMAGE, "true")
    assert refused.returncode == 125
    assert refused.stderr.decode().startswith(f"boxlite: invalid --cpus {too_many}: this host")
    proc = bx("run", "--rm", "--cpus", "2", "--memory", "768m", IMAGE,
              "sh", "-c", "nproc; grep MemTotal /proc/meminfo")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "2"
    mem_kib = int(lines[1].split()[1])
    assert 600 * 1024 < mem_kib <= 768 * 1024


def test_timeout_kills_with_124() -> None:
    proc = bx("run", "--rm", "--timeout", "1", IMAGE, "sleep", "60")
    assert proc.returncode == 124
    # longer than one poll() can wait (2**31 ms, ~24.8 days): the exit is still seen
    long = bx("run", "--rm", "--timeout", "2200000", IMAGE, "sh", "-c", "echo hi; exit 3",
              timeout=120)
    assert (long.returncode, long.stdout) == (3, b"hi\n"), long.stderr


def test_python_in_default_image() -> None:
    proc = bx("run", "--rm", IMAGE, "python3", "-c", "import sys; print(sys.version_info[0])")
    assert proc.stdout == b"3\n"


def test_tty_gets_a_pty_of_the_host_terminal_size() -> None:
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    code = ("import os,sys; print(os.isatty(0), os.isatty(1)); "
            "print(os.get_terminal_size().lines, os.get_terminal_size().columns)")
    proc = subprocess.Popen([boxlite_bin(), "run", "--rm", "-t", IMAGE, "python3", "-c", code],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    assert proc.wait(timeout=300) == 0, out
    os.close(master)
    text = out.decode(errors="replace")
    assert "True True" in text
    assert "33 101" in text


def test_accel_warning_once_per_boot_and_forcing_tcg(e2e_home: Path) -> None:
    (e2e_home / "cache" / "accel.json").unlink(missing_ok=True)  # as after a reboot
    auto = bx("run", "--rm", "--accel", "auto", IMAGE, "true")
    assert auto.returncode == 0
    again = bx("run", "--rm", "--accel", "auto", IMAGE, "true")
    assert again.returncode == 0
    from boxlite_cli.vmm.accel import static_kvm_problem

    if static_kvm_problem() is not None:
        assert auto.stderr.count(b"warning: KVM is not usable") == 1
        assert b"see boxlite doctor" in auto.stderr
        # asked for by name: one line before anything boots, nothing left behind
        before = bx("ps", "-a", "-q").stdout
        kvm = bx("run", "--rm", "--accel", "kvm", IMAGE, "true")
        assert kvm.returncode == 125
        assert kvm.stderr.decode().startswith("boxlite: KVM was asked for (--accel kvm) but "
                                              "is not usable here: "), kvm.stderr
        assert bx("ps", "-a", "-q").stdout == before
    assert b"warning" not in again.stderr  # the verdict stands until the next boot
    forced = bx("run", "--rm", IMAGE, "true", env={"BOXLITE_ACCEL": "tcg"})
    assert forced.returncode == 0
    assert b"warning" not in forced.stderr


def test_a_user_can_open_its_own_stdio_and_the_root_is_dockers() -> None:
    """A non-root main process owns its stdio pipes, as runc makes them: images that log
    to /dev/stdout and /dev/stderr work. The root has no mkfs lost+found."""
    proc = bx("run", "--rm", "-i", "-u", "nobody", IMAGE, "sh", "-c",
              "cat /dev/stdin; echo out > /dev/stdout; echo err > /dev/stderr; ls -A /",
              input=b"in\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"err\n"
    lines = proc.stdout.decode().splitlines()
    assert lines[:2] == ["in", "out"] and "etc" in lines and "lost+found" not in lines, lines


# What `pkill -f python` does (procps is not in the default image): every process
# whose command line names python gets SIGKILL, but this shell.
PKILL_PYTHON = ('for p in /proc/[0-9]*; do [ "${p#/proc/}" = "$$" ] && continue; '
                'grep -q python "$p/cmdline" 2>/dev/null && kill -9 "${p#/proc/}"; done; '
                'tr "\\0" " " < /proc/1/cmdline; echo; cat /proc/1/comm')


def test_pkill_python_in_a_box_leaves_its_agent_be() -> None:
    """A workload's `pkill -f python` (or `killall python3`) does not end the box: the
    agent (python) is not even in the box's PID namespace."""
    run = bx("run", "-d", "--name", "pk", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    try:
        server = bx("exec", "-d", "pk", "python3", "-c", "import time; time.sleep(600)")
        assert server.returncode == 0, server.stderr
        killed = bx("exec", "pk", "sh", "-c", PKILL_PYTHON)
        assert killed.returncode == 0, killed.stderr
        assert killed.stdout == b"boxlite-init \nboxlite-init\n"
        assert bx("exec", "pk", "echo", "alive").stdout == b"alive\n"  # the agent is fine
        left = bx("exec", "pk", "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        assert b"python" not in left.stdout and b"boxlite-agent" not in left.stdout
    finally:
        bx("rm", "-f", "pk")


# Every process of the box as `ps -e -o pid,ppid,args` shows them (no procps in the image).
LIST_PROCESSES = ('for p in /proc/[0-9]*; do [ "${p#/proc/}" = "$$" ] && continue; '
                  'echo "${p#/proc/} $(awk \'/^PPid/ {print $2}\' $p/status) '
                  '$(tr "\\0" " " < $p/cmdline)"; done')


def test_a_box_has_its_own_pid_namespace() -> None:
    """Like docker's: a box sees its own processes only. PID 1 is the box's init
    (docker run --init's place), the main process is its sibling, /proc/1/root is the
    box's own root (not the guest agent's), and orphans are reaped."""
    run = bx("run", "-d", "--name", "pidns", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    try:
        orphans = bx("exec", "pidns", "sh", "-c",
                     "(sleep 0.2 >/dev/null 2>&1 &); (sleep 600 >/dev/null 2>&1 &); sleep 1")
        assert orphans.returncode == 0, orphans.stderr
        seen = bx("exec", "pidns", "sh", "-c", LIST_PROCESSES)
        assert seen.returncode == 0, seen.stderr
        processes = sorted((line.split(" ", 2) for line in seen.stdout.decode().splitlines()),
                           key=lambda p: int(p[0]))
        assert [p[1:] for p in processes] == [["0", "boxlite-init "], ["0", "sleep 600 "],
                                              ["1", "sleep 600 "]], processes
        assert [p[0] for p in processes[:2]] == ["1", "2"], processes
        zombies = bx("exec", "pidns", "sh", "-c", "grep -l '^State:.*Z' /proc/[0-9]*/status")
        assert zombies.stdout == b"", zombies.stdout  # the exited orphan was reaped
        root = bx("exec", "pidns", "sh", "-c", "ls -a /proc/1/root/run; readlink /proc/1/root")
        assert root.returncode == 0 and b"boxlite" not in root.stdout, root.stdout
    finally:
        bx("rm", "-f", "pidns")


def test_dropped_capabilities_are_gone_from_the_main_process_and_every_exec() -> None:
    """--cap-drop ALL: a root process has none (chown is refused); --cap-add gives one
    back, to the main process and to execs, root or not; a clone keeps them."""
    dropped = bx("run", "--rm", "--cap-drop", "ALL", IMAGE, "sh", "-c",
                 "grep CapEff /proc/self/status; chown 1 /tmp")
    assert dropped.returncode == 1
    assert dropped.stdout == b"CapEff:\t0000000000000000\n"
    assert b"Operation not permitted" in dropped.stderr
    # --privileged gives every capability, over --cap-drop (docker's)
    every = bx("run", "--rm", IMAGE, "grep", "CapEff", "/proc/self/status")
    privileged = bx("run", "--rm", "--privileged", "--cap-drop", "ALL", IMAGE, "grep", "CapEff",
                    "/proc/self/status")
    assert privileged.stdout == every.stdout != b"CapEff:\t0000000000000000\n", privileged.stderr
    run = bx("run", "-d", "--name", "capped", "--cap-drop", "ALL", "--cap-add",
             "NET_BIND_SERVICE", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    try:
        bounding = b"CapBnd:\t0000000000000400\n"  # (NET_BIND_SERVICE: 10)
        for user in ("root", "1000"):
            seen = bx("exec", "-u", user, "capped", "grep", "CapBnd", "/proc/self/status")
            assert (seen.returncode, seen.stdout) == (0, bounding), seen.stderr
        assert bx("clone", "capped", "--name", "capped-2").returncode == 0
        [clone] = json.loads(bx("inspect", "capped-2").stdout)
        assert (clone["config"]["cap_drop"], clone["config"]["cap_add"]) == (
            ["ALL"], ["NET_BIND_SERVICE"])
    finally:
        bx("rm", "-f", "capped", "capped-2")


@pytest.mark.parametrize("interactive", [False, True], ids=["direct", "session"])
def test_kill_minus_one_as_root_in_a_box_spares_the_box(interactive: bool) -> None:
    """`kill -9 -1` kills every other process of the box, but not its init, nor the
    guest agent (outside the box's PID namespace): the box goes on."""
    args = ["-i"] if interactive else []
    script = 'sleep 600 & p=$!; kill -9 -1; wait $p; echo "sleep: $?"; kill -9 1; echo alive'
    proc = bx("run", "--rm", *args, IMAGE, "sh", "-c", script, input=b"")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"sleep: 137\nalive\n"


def test_the_boxs_proc_has_runcs_read_only_paths() -> None:
    """Root in a box, every capability dropped, cannot reboot or crash its VM through
    /proc/sysrq-trigger, nor set the guest kernel's knobs: as in runc's containers."""
    script = ("echo b > /proc/sysrq-trigger; echo sysrq=$?; "
              "awk '$2 ~ /^\\/proc\\// {print $2, substr($4, 1, 2)}' /proc/mounts")
    proc = bx("run", "--rm", "--cap-drop", "ALL", IMAGE, "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0] != "sysrq=0" and b"Read-only file system" in proc.stderr, lines
    assert {"/proc/sys ro", "/proc/sysrq-trigger ro", "/proc/irq ro", "/proc/bus ro"} <= set(
        lines[1:]), lines


def test_wait_goes_on_past_a_missing_box_and_a_run_d_that_cannot_say_its_id_leaves_none(
        ) -> None:
    """(wait stopped at the missing box and returned while the next one ran; run -d
    > /dev/full exited 125 with its box running, and no id for a script to remove it.)"""
    for name, script in (("w1", "exit 11"), ("w2", "sleep 2; exit 12")):
        assert bx("run", "-d", "--name", name, IMAGE, "sh", "-c", script).returncode == 0
    try:
        waited = bx("wait", "w1", "nosuch", "w2", timeout=120)
        assert (waited.returncode, waited.stdout, waited.stderr) == (
            125, b"11\n12\n", b"boxlite: no such box: nosuch\n")
        with open("/dev/full", "wb") as full:
            lost = subprocess.run([boxlite_bin(), "run", "-d", "--name", "lost", IMAGE,
                                   "sleep", "600"], stdout=full, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, timeout=300, check=False)
        assert (lost.returncode, lost.stderr.decode()) == (
            125, "boxlite: cannot write the box's id to standard output: No space left on "
                 "device; the box was removed\n")
        assert bx("ps", "-aq", "--filter", "name=lost").stdout == b""
    finally:
        bx("rm", "-f", "w1", "w2", "lost")


def test_kill_minus_one_from_an_exec_ends_the_main_process() -> None:
    """As with docker run --init: the main process is not the namespace's init, so an
    exec's `kill -9 -1` kills it too, and the box exits 137."""
    run = bx("run", "-d", "--name", "k1", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    try:
        bx("exec", "k1", "sh", "-c", "kill -9 -1; sleep 30")  # (it may go with the box)
        assert bx("wait", "k1", timeout=120).stdout == b"137\n"
    finally:
        bx("rm", "-f", "k1")


@pytest.mark.parametrize("interactive", [False, True], ids=["direct", "session"])
def test_a_box_whose_vm_powers_off_says_so(interactive: bool, e2e_home: Path) -> None:
    """Root in a box can still power its VM off: the box ends, and `run` says so in
    one line with 125, the box gone with --rm."""
    args = ["-i"] if interactive else []
    script = f"{sysrq('o')}; sleep 30; echo survived"
    proc = bx("run", "--rm", *args, IMAGE, "sh", "-c", script, input=b"")
    assert proc.returncode == 125, proc.stderr
    lines = proc.stderr.decode().strip().splitlines()
    assert lines[-1].startswith("boxlite: the box stopped before its command ended: the VM "
                                "powered off"), proc.stderr
    assert b"survived" not in proc.stdout
    assert bx("ps", "-aq").stdout == b""
    assert vm_processes(e2e_home) == []


@pytest.mark.parametrize(("stop", "mode"), [(["rm", "-f"], []), (["stop", "-t", "1"], []),
                                           (["rm", "-f"], ["-i"])],
                         ids=["rm-f", "stop", "rm-f-session"])
def test_an_exec_whose_box_is_stopped_is_killed_with_it(stop: list[str], mode: list[str]) -> None:
    """As docker's exec: 137 and no error of boxlite's (not a VM failure: 125)."""
    run = bx("run", "-d", "--name", "stopped-under", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    try:
        proc = subprocess.Popen([boxlite_bin(), "exec", *mode, "stopped-under", "sh", "-c",
                                 "echo started; exec sleep 600"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
        assert bx(*stop, "stopped-under", timeout=120).returncode == 0
        _, err = proc.communicate(timeout=120)
        assert (proc.returncode, err) == (137, b"")
    finally:
        bx("rm", "-f", "stopped-under")


def test_a_box_whose_process_the_oom_killer_took_says_so() -> None:
    """docker's State.OOMKilled: the guest's OOM killer ended the main process (137);
    a box that ends as it should says false, and the next start clears it."""
    hog = "b = []\nwhile True: b.append(bytearray(1 << 20))"
    try:
        run = bx("run", "--name", "hungry", "-m", "192m", IMAGE, "python3", "-c", hog,
                 timeout=300)
        assert run.returncode == 137, run.stderr
        assert ok("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}",
                  "hungry") == b"true 137\n"
        assert bx("run", "--name", "fed", IMAGE, "true").returncode == 0
        assert ok("inspect", "-f", "{{.State.OOMKilled}}", "fed") == b"false\n"
    finally:
        bx("rm", "-f", "hungry", "fed")


THRASH_READER = """import mmap
with open("/var/tmp/hot", "w+b") as f:
    f.write(b"x" * (40 << 20))
    f.flush()
    m = mmap.mmap(f.fileno(), 0)
open("/var/tmp/ready", "w").close()
while True:
    for i in range(0, len(m), 4096):
        m[i]
"""


def test_a_box_that_thrashes_at_its_memory_limit_is_oom_killed_not_left_crawling() -> None:
    """A hog beside a process that keeps reading its files: each reclaim frees a page the
    reader brings back, so the kernel counts progress and retried for minutes (100 s
    and more under TCG); the agent's memory guard (oomguard.py) ends the hog."""
    script = (f"python3 -c '{THRASH_READER}' & "
              "until [ -e /var/tmp/ready ]; do sleep 0.2; done; "
              "python3 -c 'b = []\nwhile True: b.append(bytearray(1 << 20))'")
    try:
        run = bx("run", "--name", "thrashing", "-m", "192m", IMAGE, "sh", "-c", script,
                 timeout=240)
        assert run.returncode == 137, run.stderr
        assert ok("inspect", "-f", "{{.State.OOMKilled}}", "thrashing") == b"true\n"
    finally:
        bx("rm", "-f", "thrashing")


def test_wait_on_a_box_removed_meanwhile_prints_137() -> None:
    """As docker's wait: the box was killed with its removal (not "no such box", 125)."""
    assert bx("run", "-d", "--name", "waited", IMAGE, "sleep", "600").returncode == 0
    try:
        waiting = subprocess.Popen([boxlite_bin(), "wait", "waited"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        time.sleep(1.5)
        assert bx("rm", "-f", "waited").returncode == 0
        out, err = waiting.communicate(timeout=120)
        assert (waiting.returncode, out, err) == (0, b"137\n", b"")
    finally:
        bx("rm", "-f", "waited")


def test_an_exec_whose_vm_powers_off_says_so(e2e_home: Path) -> None:
    run = bx("run", "-d", "--name", "doomed", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    try:
        proc = bx("exec", "doomed", "sh", "-c", f"{sysrq('o')}; sleep 30")
        assert proc.returncode == 125, proc.stderr
        assert proc.stderr.decode().strip().splitlines()[-1].startswith(
            "boxlite: the box stopped before its command ended: the VM powered off"), proc.stderr
        assert bx("wait", "doomed", timeout=120).stdout == b"125\n"  # (stopped by then)
        state = json.loads(bx("inspect", "doomed").stdout)[0]
        assert state["status"] == "exited" and "the VM powered off" in state["error"]
    finally:
        bx("rm", "-f", "doomed")
    assert vm_processes(e2e_home) == []


def test_detached_box_with_concurrent_execs(e2e_home: Path) -> None:
    run = bx("run", "-d", "--name", "svc", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    box_id = run.stdout.decode().strip()
    assert len(box_id) == 64
    try:
        ps = json.loads(bx("ps", "--format", "json").stdout)
        assert [b["name"] for b in ps if b["id"] == box_id] == ["svc"]
        assert bx("ps", "-q").stdout.decode().split() == [box_id[:12]]

        procs = [subprocess.Popen([boxlite_bin(), "exec", "svc", "sh", "-c",
                                   f"sleep 1; echo exec{i}; exit {i}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for i in (3, 4)]
        results = [(p.communicate(timeout=300), p.returncode) for p in procs]
        assert results[0][0][0] == b"exec3\n" and results[0][1] == 3
        assert results[1][0][0] == b"exec4\n" and results[1][1] == 4

        assert bx("exec", box_id[:8], "no-such-cmd").returncode == 127
        assert bx("exec", "--timeout", "1", "svc", "sleep", "30").returncode == 124
        assert bx("exec", "-i", "svc", "cat", input=b"piped").stdout == b"piped"
        env = bx("exec", "-e", "X=1", "-w", "/etc", "svc", "sh", "-c", 'echo "$X $(pwd)"')
        assert env.stdout == b"1 /etc\n"
        # A missing -w fails an exec (docker exec does), and creates nothing.
        missing = bx("exec", "-w", "/no/such/dir", "svc", "true")
        assert missing.returncode == 126
        assert missing.stderr.decode().strip().endswith(
            'cwd "/no/such/dir": no such file or directory'), missing.stderr
        assert bx("exec", "svc", "test", "-e", "/no").returncode == 1

        # Starting a running box leaves it be and succeeds (docker's way)...
        again = bx("start", "svc")
        assert (again.returncode, again.stdout) == (0, b"svc\n"), again.stderr
        # ... unless it was to resume a checkpoint over what runs.
        resume = bx("start", "--checkpoint", "cp", "svc")
        assert resume.returncode == 125
        assert resume.stderr.decode().strip() == "boxlite: box svc is already running"
        assert bx("ps", "-q").stdout.decode().split() == [box_id[:12]]
        assert bx("rm", "svc").returncode == 125  # running: refuses without -f
        stop = bx("stop", "-t", "2", "svc")
        assert stop.returncode == 0, stop.stderr
        state = json.loads(bx("ps", "-a", "--format", "json").stdout)
        mine = next(b for b in state if b["id"] == box_id)
        assert mine["status"] == "exited"
        assert mine["exit_code"] == 143  # SIGTERM
        assert bx("exec", "svc", "true").returncode == 125
    finally:
        bx("rm", "-f", "svc")
    assert box_id not in bx("ps", "-a", "-q").stdout.decode()
    assert vm_processes(e2e_home) == []


def test_failed_boot_is_cleaned_up(tmp_path: Path, e2e_home: Path) -> None:
    from boxlite_cli.payload import find_payload

    good = find_payload().root
    broken = tmp_path / "payload"
    broken.mkdir()
    for entry in good.iterdir():
        if entry.name != "initrd.img":
            (broken / entry.name).symlink_to(entry)
    (broken / "initrd.img").write_bytes(b"this is not an initramfs")
    before = bx("ps", "-a", "-q").stdout
    proc = bx("run", "--rm", "--name", "broken", IMAGE, "true",
              env={"BOXLITE_PAYLOAD": str(broken), "BOXLITE_BOOT_TIMEOUT": "60"})
    assert proc.returncode == 125
    err = proc.stderr.decode()
    lines = [line for line in err.splitlines() if "warning: KVM" not in line]
    assert lines[0].startswith("boxlite: the box failed to start:"), err
    assert "Kernel panic" in lines[0]
    assert lines[1].startswith("  hint: the VM console log is ")
    assert Path(lines[1].split(" is ", 1)[1]).is_file()
    assert "Traceback" not in err
    assert vm_processes(e2e_home) == []
    assert bx("ps", "-a", "-q").stdout == before  # --rm: nothing left behind


def test_doctor_reports_accelerators() -> None:
    proc = bx("doctor", "--format", "json")
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["guest payload"]["ok"]
    assert checks["tcg"]["ok"]
    assert checks["kvm"]["detail"]
    assert proc.returncode == 0


def test_a_server_started_in_the_background_by_exec_keeps_working() -> None:
    """What an agent does: `exec BOX sh -c 'server &'`. Once the exec returned, its
    background child's writes go nowhere but succeed (it is not killed by SIGPIPE at
    its first log line)."""
    run = bx("run", "-d", "--name", "bgsrv", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    try:
        started = bx("exec", "bgsrv", "sh", "-c",
                     "(sleep 1; echo log; echo log >&2; touch /tmp/alive; sleep 600) & echo up")
        assert (started.returncode, started.stdout) == (0, b"up\n"), started.stderr
        deadline = time.monotonic() + 60
        while bx("exec", "bgsrv", "test", "-e", "/tmp/alive").returncode != 0:
            assert time.monotonic() < deadline, "the background child died at its first write"
            time.sleep(0.5)
    finally:
        bx("rm", "-f", "bgsrv")


def test_pull_of_the_built_in_image_needs_no_registry() -> None:
    pulled = bx("pull", IMAGE)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.decode().splitlines()[1:] == [
        f"Status: Image is up to date for {IMAGE}", IMAGE]


def test_sysctls_are_set_in_the_boxs_kernel_before_its_first_process() -> None:
    """docker's --sysctl, and more: the guest's kernel is the box's own, so vm.* is taken
    too; a parameter the kernel has not, or a value it refuses, fails the start in one
    line (125) and a --rm box leaves nothing."""
    seen = ok("run", "--rm", "--sysctl", "net.core.somaxconn=1234", "--sysctl",
              "vm/overcommit_memory=1", "--sysctl", "net.ipv4.ip_local_port_range=2000 3000",
              IMAGE, "cat", "/proc/sys/net/core/somaxconn", "/proc/sys/vm/overcommit_memory",
              "/proc/sys/net/ipv4/ip_local_port_range")
    assert seen.decode().split() == ["1234", "1", "2000", "3000"]
    before = ok("ps", "-a", "-q")
    for sysctl, says in (("kernel.nosuch=1", "--sysctl kernel.nosuch: the guest's kernel has "
                                             "no such parameter"),
                         ("net.core.somaxconn=lots", "--sysctl net.core.somaxconn=lots: the "
                                                     "kernel refuses that value")):
        refused = bx("run", "--rm", "--sysctl", sysctl, IMAGE, "true")
        assert refused.returncode == 125, refused.stderr
        assert refused.stderr.decode().splitlines()[-1] == (
            f"boxlite: initialising the guest: {says}")
    assert ok("ps", "-a", "-q") == before


def test_ulimits_bind_every_process_of_the_box() -> None:
    """docker's --ulimit: the main process and an exec (another user's too) have them;
    a limit the guest's kernel would refuse fails the start in one line (125)."""
    try:
        ok("run", "-d", "--name", "limited", "--ulimit", "nofile=1024:2048", "--ulimit",
           "core=0", IMAGE, "sh", "-c", "ulimit -n > /tmp/main; sleep 600")
        seen = ok("exec", "-u", "nobody", "limited", "sh", "-c",
                  "cat /tmp/main; ulimit -n; ulimit -Hn; ulimit -c; env | grep -c RLIMIT || true")
        assert seen.decode().split() == ["1024", "1024", "2048", "0", "0"]
        assert json.loads(ok("inspect", "-f", "{{json .HostConfig.Ulimits}}", "limited")) == [
            {"Name": "core", "Soft": 0, "Hard": 0}, {"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    finally:
        bx("rm", "-f", "limited")
    refused = bx("run", "--rm", "--ulimit", "nofile=2000000", IMAGE, "true")
    assert refused.returncode == 125
    assert refused.stderr.decode().splitlines()[-1] == (
        "boxlite: initialising the guest: --ulimit nofile=2000000:2000000: more than the "
        "1048576 open files the guest's kernel allows a process")


def test_no_new_privileges_binds_every_process_of_the_box() -> None:
    """docker's --security-opt no-new-privileges: the main process and an exec have
    PR_SET_NO_NEW_PRIVS (set-uid programs gain nothing); a box without it has not."""
    status = "grep NoNewPrivs /proc/self/status | tr -d '\\t'"
    try:
        ok("run", "-d", "--name", "nnp", "--security-opt", "no-new-privileges", IMAGE, "sh",
           "-c", f"{status} > /tmp/main; sleep 600")
        seen = ok("exec", "-u", "nobody", "nnp", "sh", "-c", f"cat /tmp/main; {status}")
        assert seen.decode().split() == ["NoNewPrivs:1", "NoNewPrivs:1"]
        assert ok("inspect", "-f", "{{json .HostConfig.SecurityOpt}}", "nnp") == (
            b'["no-new-privileges"]\n')
    finally:
        bx("rm", "-f", "nnp")
    assert ok("run", "--rm", IMAGE, "sh", "-c", status) == b"NoNewPrivs:0\n"


def test_group_add_gives_every_process_of_the_box_more_groups() -> None:
    """docker's --group-add: a name of the image's /etc/group or a gid, for the main
    process and an exec (another user's too); an unknown name fails the start."""
    try:
        ok("run", "-d", "--name", "grouped", "--group-add", "audio", "--group-add", "4242",
           IMAGE, "sh", "-c", "id -G > /tmp/main; sleep 600")
        seen = ok("exec", "-u", "nobody", "grouped", "sh", "-c", "cat /tmp/main; id -G")
        assert seen.decode().splitlines() == ["0 29 4242", "65534 29 4242"]
        assert ok("inspect", "-f", "{{json .HostConfig.GroupAdd}}", "grouped") == (
            b'["audio","4242"]\n')
    finally:
        bx("rm", "-f", "grouped")
    refused = bx("run", "--rm", "--group-add", "nosuchgroup", IMAGE, "true")
    assert refused.returncode == 125
    assert refused.stderr.decode().splitlines()[-1].endswith(
        "unable to find group nosuchgroup: no matching entries in group file")
