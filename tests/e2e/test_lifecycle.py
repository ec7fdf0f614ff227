"""create/start/logs/exec/restart/kill/wait/inspect on one box, with real VMs."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, boxlite_bin, bx, vm_processes

pytestmark = pytest.mark.e2e


def logs_until(box: str, needle: bytes, timeout_s: float = 120) -> tuple[bytes, bytes]:
    deadline = time.monotonic() + timeout_s
    while True:
        proc = bx("logs", box)
        if needle in proc.stdout:
            return proc.stdout, proc.stderr
        assert time.monotonic() < deadline, (needle, proc.stdout, proc.stderr)
        time.sleep(0.5)


def test_box_lifecycle_keeps_disk_and_logs(e2e_home: Path) -> None:
    script = "echo started; echo oops >&2; exec sleep 600"
    created = bx("create", "--name", "lc", IMAGE, "sh", "-c", script)
    assert created.returncode == 0, created.stderr
    box_id = created.stdout.decode().strip()
    try:
        record = json.loads(bx("inspect", "lc").stdout)[0]
        assert record["id"] == box_id and record["status"] == "created"
        assert record["config"]["process"]["argv"] == ["sh", "-c", script]

        assert bx("start", "lc").returncode == 0
        out, err = logs_until("lc", b"started")
        assert out == b"started\n"
        assert err.startswith(b"oops")
        stamped = bx("logs", "-t", "lc").stdout.decode()
        stamp, _, line = stamped.partition(" ")
        assert line == "started\n", stamped
        received = datetime.datetime.fromisoformat(stamp[:26] + "+00:00").timestamp()
        assert abs(received - time.time()) < 600, stamped  # (the shim's clock: this host's)
        assert bx("logs", "--since", "0s", "lc").stdout == b""
        assert bx("logs", "--until", "0s", "lc").stdout == b"started\n"

        stats = json.loads(bx("stats", "--no-stream", "--format", "json", "lc").stdout)
        assert stats[0]["name"] == "lc"
        # the box's processes' memory against their limit (a little less than the VM's
        # 512 MiB: its kernel and agent keep some), as docker's; the VM's on the host too
        assert 256 << 20 < stats[0]["memory_limit_bytes"] < 512 << 20
        assert 0 < stats[0]["memory_bytes"] < 64 << 20 < stats[0]["vm_memory_bytes"]
        hold = 'b = b"x" * (64 << 20); import time; time.sleep(600)'
        assert bx("exec", "-d", "lc", "python3", "-c", hold).returncode == 0
        deadline = time.monotonic() + 120
        while json.loads(bx("stats", "--no-stream", "--format", "json", "lc").stdout
                         )[0]["memory_bytes"] < 64 << 20:
            assert time.monotonic() < deadline, "the box's 64 MiB never showed"
            time.sleep(1)
        assert stats[0]["pids"] >= 1 and stats[0]["block_read_bytes"] >= 0  # (docker's PIDS)
        send = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "[s.sendto(b'x' * 1000, ('10.0.2.2', 9)) for _ in range(20)]")
        assert bx("exec", "lc", "python3", "-c", send).returncode == 0
        sample = json.loads(bx("stats", "--no-stream", "--format", "json", "lc").stdout)[0]
        assert sample["net_tx_bytes"] >= 20_000  # (docker's NET I/O: the box's interfaces)
        columns = bx("stats", "--no-stream", "--format", "{{.PIDs}}|{{.NetIO}}", "lc").stdout
        pids, net_io = columns.decode().strip().split("|")
        assert int(pids) >= 1 and re.fullmatch(r"[0-9.]+[kMG]?B / [0-9.]+[kMG]?B", net_io)
        assert net_io.split(" / ")[1] != "0B"
        assert bx("logs", "--tail", "1", "lc").stdout == b""  # the last line is stderr's
        # exec -d -i: no stdin, as docker's (a pipe nobody could ever feed or close held
        # its reader for good)
        assert bx("exec", "-d", "-i", "lc", "sh", "-c", "cat; echo closed > /tmp/di"
                  ).returncode == 0
        deadline = time.monotonic() + 60
        while bx("exec", "lc", "cat", "/tmp/di").stdout != b"closed\n":
            assert time.monotonic() < deadline, "exec -d -i's stdin stayed open"
            time.sleep(0.5)

        assert bx("exec", "lc", "sh", "-c", "echo persisted > /root/f").returncode == 0
        # an attach and a `logs -f` of this run end with it, as docker's: they do not
        # follow the run a restart begins (gRPC reconnects to the same socket path)
        followers = [subprocess.Popen([boxlite_bin(), *args, "lc"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for args in (["attach"], ["logs", "-f"])]
        time.sleep(1)
        restarted = bx("restart", "-t", "1", "lc")
        assert restarted.returncode == 0, restarted.stderr
        try:
            ended = [(f.wait(timeout=60), f.stderr.read()) for f in followers]  # type: ignore[union-attr]
        finally:
            for f in followers:
                f.kill()
        assert ended[0][0] in (137, 143) and ended[1] == (0, b"oops\n"), ended
        assert b"goaway" not in ended[0][1].lower(), ended
        times = bx("inspect", "-f", "{{.State.StartedAt}} {{.State.FinishedAt}}",
                   "lc").stdout.decode().split()
        started, finished = (datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
                             for t in times)
        assert finished.year > 1 and finished <= started, times  # (the first run's end,
        # kept while the second runs, as docker's)
        assert bx("exec", "lc", "cat", "/root/f").stdout == b"persisted\n"
        out, _ = logs_until("lc", b"started\nstarted")
        assert out == b"started\nstarted\n"

        assert bx("kill", "-s", "TERM", "lc").returncode == 0
        waited = bx("wait", "lc")
        assert waited.stdout == b"143\n"
        record = json.loads(bx("inspect", box_id[:10]).stdout)[0]
        assert record["status"] == "exited" and record["exit_code"] == 143
        assert bx("inspect", "-f", "{{.Status}} {{.ExitCode}}", "lc").stdout == b"exited 143\n"
        assert bx("kill", "lc").returncode == 125  # not running any more
    finally:
        bx("rm", "-f", "lc")
    assert vm_processes(e2e_home) == []


def test_bad_signal_is_a_usage_error() -> None:
    proc = bx("kill", "-s", "NOPE", "whatever")
    assert proc.returncode == 125
    assert proc.stderr.startswith(b"boxlite: invalid signal: NOPE")


def test_rename_and_prune_without_booting() -> None:
    assert bx("create", "--name", "r1", IMAGE, "true").returncode == 0
    assert bx("create", "--name", "r3", IMAGE, "true").returncode == 0
    assert bx("rename", "r1", "r2").returncode == 0
    assert json.loads(bx("inspect", "r2").stdout)[0]["name"] == "r2"
    assert bx("inspect", "r1").returncode == 125
    clash = bx("rename", "r2", "r3")
    assert clash.returncode == 125
    assert b'the name "r3" is already in use' in clash.stderr
    pruned = bx("prune", "-f")
    assert pruned.returncode == 0
    assert bx("inspect", "r2").returncode == 125
    assert bx("inspect", "r3").returncode == 125


def test_logs_follow_ends_when_the_box_stops() -> None:
    run = bx("run", "-d", "--name", "fl", IMAGE, "sh", "-c", "for i in 1 2 3; do echo $i; sleep 1; done")
    assert run.returncode == 0, run.stderr
    try:
        followed = bx("logs", "-f", "fl", timeout=300)
        assert followed.returncode == 0
        assert followed.stdout == b"1\n2\n3\n"
    finally:
        bx("rm", "-f", "fl")


def test_stop_timeout_is_the_boxs_grace_unless_t_says_otherwise() -> None:
    """The main process takes 3 s to end after SIGTERM: --stop-timeout 1 kills it first
    (137); stop -t 30 lets it end (its own code)."""
    script = "trap 'sleep 3; exit 7' TERM; while :; do sleep 0.1; done"
    run = bx("run", "-d", "--name", "grace", "--stop-timeout", "1", IMAGE, "sh", "-c", script)
    assert run.returncode == 0, run.stderr
    try:
        assert bx("inspect", "-f", "{{.Config.StopTimeout}}", "grace").stdout == b"1\n"
        assert bx("stop", "grace").returncode == 0
        assert bx("inspect", "-f", "{{.State.ExitCode}}", "grace").stdout == b"137\n"
        assert bx("start", "grace").returncode == 0
        time.sleep(0.5)  # (the trap is set)
        assert bx("stop", "-t", "30", "grace").returncode == 0
        assert bx("inspect", "-f", "{{.State.ExitCode}}", "grace").stdout == b"7\n"
    finally:
        bx("rm", "-f", "grace")


def test_logs_follow_of_a_rm_box_ends_cleanly_when_it_is_removed() -> None:
    run = bx("run", "-d", "--rm", "--name", "flrm", IMAGE, "sh", "-c",
             "echo a; sleep 2; echo b; exit 3")
    assert run.returncode == 0, run.stderr
    try:
        followed = bx("logs", "-f", "flrm", timeout=300)
        assert (followed.returncode, followed.stdout, followed.stderr) == (0, b"a\nb\n", b"")
    finally:
        bx("rm", "-f", "flrm")


def test_a_detached_box_logs_all_it_wrote_before_it_ended() -> None:
    """The VM goes down only once the end of the output is in the log."""
    script = "i=0; while [ $i -lt 30000 ]; do echo $i; i=$((i+1)); done; echo END"
    run = bx("run", "-d", "--name", "lastwords", IMAGE, "sh", "-c", script)
    assert run.returncode == 0, run.stderr
    try:
        assert bx("wait", "lastwords", timeout=300).stdout == b"0\n"
        logs = bx("logs", "lastwords").stdout.splitlines()
        assert len(logs) == 30001 and logs[-2:] == [b"29999", b"END"], logs[-3:]
    finally:
        bx("rm", "-f", "lastwords")


def test_a_background_writer_does_not_keep_a_box_up() -> None:
    """The box ends with its main process (its output drained first), even while a
    background child writes on: `wait` answers, and the VM is gone, long before the
    shim's bound for a stuck log stream (LOG_DRAIN_MAX_S, 60 s)."""
    script = "(while :; do echo bg; sleep 0.01; done) & echo main; sleep 1; exit 3"
    run = bx("run", "-d", "--name", "bgwriter", IMAGE, "sh", "-c", script)
    assert run.returncode == 0, run.stderr
    try:
        assert bx("wait", "bgwriter", timeout=30).stdout == b"3\n"
        deadline = time.monotonic() + 30
        while (status := bx("inspect", "-f", "{{.State.Status}}", "bgwriter").stdout) != b"exited\n":
            assert time.monotonic() < deadline, status  # the writer kept the VM up
            time.sleep(0.5)
        assert b"main\n" in bx("logs", "bgwriter").stdout
    finally:
        bx("rm", "-f", "bgwriter")


@pytest.mark.parametrize(("options", "env", "files"), [
    ((), {"BOXLITE_LOG_MAX_SIZE": "65536"}, 2),
    (("--log-opt", "max-size=64k", "--log-opt", "max-file=3"), {}, 3)])
def test_the_log_of_a_chatty_box_is_bounded(e2e_home: Path, options: tuple[str, ...],
                                            env: dict[str, str], files: int) -> None:
    """Past its size (BOXLITE_LOG_MAX_SIZE, or --log-opt max-size) the log rotates into
    container.log.1 (and .2, ... up to --log-opt max-file): a box keeps at most about
    that many times the size, and `logs` shows the newest part, up to the last line."""
    limit = 64 * 1024
    run = bx("run", "--name", "chatty", *options, IMAGE, "seq", "1", "200000", env=env)
    try:
        assert run.returncode == 0, run.stderr
        assert run.stdout.endswith(b"199999\n200000\n")  # the run's own output is whole
        [box_dir] = [d for d in (e2e_home / "boxes").iterdir()
                     if json.loads((d / "state.json").read_text())["name"] == "chatty"]
        sizes = [p.stat().st_size for p in box_dir.glob("container.log*")]
        assert len(sizes) == files and sum(sizes) <= files * limit + 70000, sizes
        logs = bx("logs", "chatty")
        assert logs.stdout.endswith(b"199999\n200000\n")
        assert 0 < len(logs.stdout) <= files * limit
        assert not logs.stdout.startswith(b"1\n2\n")  # the oldest part is gone
    finally:
        bx("rm", "-f", "chatty")


def test_a_box_with_log_driver_none_keeps_no_log(e2e_home: Path) -> None:
    run = bx("run", "--name", "unlogged", "--log-driver", "none", IMAGE, "echo", "seen")
    try:
        assert (run.returncode, run.stdout) == (0, b"seen\n"), run.stderr  # (shown, not kept)
        logs = bx("logs", "unlogged")
        assert logs.returncode == 125
        assert logs.stderr.decode().splitlines()[0] == (
            "boxlite: box unlogged keeps no log (--log-driver none): its output went to "
            "whoever was attached")
        [box_dir] = [d for d in (e2e_home / "boxes").iterdir()
                     if json.loads((d / "state.json").read_text())["name"] == "unlogged"]
        assert not list(box_dir.glob("container.log*"))
    finally:
        bx("rm", "-f", "unlogged")


def test_logs_follow_ends_when_its_reader_goes() -> None:
    """`logs -f BOX | head -2` returns while the box goes on printing."""
    run = bx("run", "-d", "--name", "fh", IMAGE, "sh", "-c",
             "i=0; while :; do i=$((i+1)); echo line$i; sleep 0.3; done")
    assert run.returncode == 0, run.stderr
    try:
        head = subprocess.run(f"{boxlite_bin()} logs -f fh | head -2", shell=True,
                              capture_output=True, timeout=120)
        assert head.stdout == b"line1\nline2\n"
    finally:
        bx("rm", "-f", "fh")


def test_wait_stop_and_restart_of_a_rm_box() -> None:
    """A --rm box: wait gives its exit code although its record goes with it; restart
    keeps it; stop succeeds (and the box is gone)."""
    waited = bx("run", "-d", "--rm", "--name", "rw", IMAGE, "sh", "-c", "sleep 5; exit 5")
    assert waited.returncode == 0, waited.stderr
    result = bx("wait", "rw", timeout=120)
    assert (result.returncode, result.stdout) == (0, b"5\n"), result.stderr
    run = bx("run", "-d", "--rm", "--name", "rr", IMAGE, "sleep", "1000")
    assert run.returncode == 0, run.stderr
    try:
        restarted = bx("restart", "-t", "1", "rr")
        assert restarted.returncode == 0, restarted.stderr
        assert json.loads(bx("inspect", "rr").stdout)[0]["status"] == "running"
        stopped = bx("stop", "-t", "1", "rr")
        assert (stopped.returncode, stopped.stdout) == (0, b"rr\n"), stopped.stderr
        assert bx("inspect", "rr").returncode == 125  # --rm: gone with its stop
        again = bx("run", "-d", "--rm", "--name", "rr", IMAGE, "sleep", "1000")
        assert again.returncode == 0, again.stderr
        removed = bx("rm", "-f", "rr")  # its shim removes it as its VM goes: done all the same
        assert (removed.returncode, removed.stdout) == (0, b"rr\n"), removed.stderr
        assert b"no such box" not in removed.stderr
        assert bx("inspect", "rr").returncode == 125
    finally:
        bx("rm", "-f", "rr")


def test_what_a_box_deletes_goes_back_to_the_host(e2e_home: Path) -> None:
    """The box's disk is mounted with discard: a deleted file's space leaves the qcow2
    overlay on the host (holes punched) with no fstrim in the box."""
    created = bx("run", "-d", "--name", "trim", IMAGE, "sleep", "600")
    assert created.returncode == 0, created.stderr
    overlay = e2e_home / "boxes" / created.stdout.decode().strip() / "disks" / "rootfs.qcow2"

    def host_mib() -> float:
        return overlay.stat().st_blocks * 512 / 2**20

    try:
        write = bx("exec", "trim", "sh", "-c", "head -c 64000000 /dev/urandom > /big && sync")
        assert write.returncode == 0, write.stderr
        assert host_mib() > 60
        remove = bx("exec", "trim", "sh", "-c", "rm /big && sync")
        assert remove.returncode == 0, remove.stderr
        deadline = time.monotonic() + 30
        while host_mib() > 16 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert host_mib() < 16
    finally:
        bx("rm", "-f", "trim")


STOP_TRAPS = ('trap "echo got USR1; exit 7" USR1; trap "echo got TERM; exit 3" TERM; '
              'echo up; while :; do sleep 0.1; done')


def test_a_stop_of_a_box_whose_guest_does_not_answer_ends_it_without_an_error(
        e2e_home: Path) -> None:
    """A guest that answers nothing (its VM frozen here; a fork bomb's, in life): stop
    ends the VM, and the box exits 137 with no error, as after any stop the user asked
    for (it said 'stopped by a signal to the shim')."""
    import os
    import signal

    started = bx("run", "-d", "--name", "unanswering", IMAGE, "sleep", "600")
    assert started.returncode == 0, started.stderr
    box_id = started.stdout.decode().strip()
    try:
        vmm = json.loads((e2e_home / "boxes" / box_id / "vmm.pid").read_text())["pid"]
        os.kill(vmm, signal.SIGSTOP)
        stopped = bx("stop", "-t", "1", "unanswering")
        assert stopped.returncode == 0, stopped.stderr
        shown = bx("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} [{{.State.Error}}]",
                   "unanswering")
        assert shown.stdout == b"exited 137 []\n"
        assert not [p for p in vm_processes(e2e_home) if box_id in p]
    finally:
        bx("rm", "-f", "unanswering")


def test_stop_sends_the_boxs_stop_signal_and_stop_s_overrides_it() -> None:
    """--stop-signal (or the image's StopSignal) is what `stop` and `restart` send
    first, as docker's; `stop -s` sends another; `inspect` shows it."""
    created = bx("run", "-d", "--name", "sig", "--stop-signal", "usr1", IMAGE,
                 "sh", "-c", STOP_TRAPS)
    assert created.returncode == 0, created.stderr
    try:
        assert json.loads(bx("inspect", "sig").stdout)[0]["config"]["stop_signal"] == "SIGUSR1"
        logs_until("sig", b"up")
        assert bx("stop", "sig").returncode == 0
        assert bx("wait", "sig").stdout == b"7\n"
        assert b"got USR1" in bx("logs", "sig").stdout
        assert bx("start", "sig").returncode == 0
        logs_until("sig", b"got USR1\nup\n")  # (the second run's traps are set)
        assert bx("stop", "-s", "TERM", "sig").returncode == 0
        assert bx("wait", "sig").stdout == b"3\n"
    finally:
        bx("rm", "-f", "sig")


def test_hostname_and_a_bad_stop_signal() -> None:
    named = bx("run", "--rm", "--hostname", "web-1.local", IMAGE, "sh", "-c",
               "hostname; grep -c web-1.local /etc/hosts")
    assert named.returncode == 0, named.stderr
    assert named.stdout == b"web-1.local\n1\n"
    before = bx("ps", "-aq").stdout
    for args in (["--stop-signal", "SIGNOPE"], ["--hostname", "-x"]):
        bad = bx("run", "--rm", *args, IMAGE, "true")
        assert bad.returncode == 125
        assert len(bad.stderr.decode().splitlines()) == 2, bad.stderr  # the line and a hint
        assert bad.stderr.startswith(b"boxlite: invalid "), bad.stderr
    assert bx("ps", "-aq").stdout == before  # nothing made


def test_start_attached_is_a_foreground_run_of_the_box() -> None:
    """start -a: the output here (streams apart), the exit code ours, again and again;
    start -ai feeds stdin to a box created with -i."""
    created = bx("create", "--name", "sa", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 5")
    made_i = bx("create", "-i", "--name", "si", IMAGE, "sh", "-c", "cat; echo done")
    assert created.returncode == 0 and made_i.returncode == 0, (created.stderr, made_i.stderr)
    try:
        for _ in range(2):
            proc = bx("start", "-a", "sa")
            err = b"".join(line for line in proc.stderr.splitlines(keepends=True)
                           if not line.startswith(b"boxlite: warning: KVM"))  # (once a boot)
            assert (proc.returncode, proc.stdout, err) == (5, b"out\n", b"err\n")
        fed = bx("start", "-ai", "si", input=b"hello\n")
        assert (fed.returncode, fed.stdout) == (0, b"hello\ndone\n"), fed.stderr
        two = bx("start", "-a", "sa", "si")
        assert two.returncode == 125 and b"one box" in two.stderr
        # a box that runs already is attached to (docker's; it was refused)
        assert bx("run", "-d", "--name", "sr", IMAGE, "sh", "-c",
                  "sleep 4; echo late; exit 6").returncode == 0
        joined = bx("start", "-a", "sr")
        assert (joined.returncode, joined.stdout) == (6, b"late\n"), joined.stderr
    finally:
        bx("rm", "-f", "sa", "si", "sr")


def _start_and_catch_it_starting(name: str) -> subprocess.Popen[bytes]:
    """`boxlite start --cold NAME` in the background, returned once NAME shows as starting."""
    start = subprocess.Popen([boxlite_bin(), "start", "--cold", name], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while json.loads(bx("inspect", name).stdout)[0]["status"] != "starting":
        assert start.poll() is None and time.monotonic() < deadline, "never seen starting"
        time.sleep(0.05)
    return start


def test_a_box_still_starting_from_another_shell_is_waited_for_or_killed() -> None:
    """exec (and a signal) to a box another shell is starting wait for it to run, not
    fail with "not running, start it"; kill (SIGKILL) stops it as it comes up."""
    assert bx("create", "--name", "booting", IMAGE, "sleep", "600").returncode == 0
    try:
        start = _start_and_catch_it_starting("booting")
        execd = bx("exec", "booting", "echo", "in")
        assert (execd.returncode, execd.stdout) == (0, b"in\n"), execd.stderr
        assert start.wait(60) == 0
        assert bx("stop", "-t", "0", "booting").returncode == 0
        start = _start_and_catch_it_starting("booting")
        killed = bx("kill", "booting")
        assert killed.returncode == 0, killed.stderr
        start.communicate(timeout=60)
        assert json.loads(bx("inspect", "booting").stdout)[0]["status"] == "exited"
    finally:
        bx("rm", "-f", "booting")


def test_wait_returns_when_a_restart_stops_the_box() -> None:
    """docker's: a restart stops the box, and a `wait` on it returns that run's code."""
    assert bx("run", "-d", "--name", "waited", IMAGE, "sleep", "600").returncode == 0
    try:
        waiter = subprocess.Popen([boxlite_bin(), "wait", "waited"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        time.sleep(1)
        assert waiter.poll() is None
        assert bx("restart", "-t", "0", "waited").returncode == 0
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0 and out in (b"143\n", b"137\n"), err  # (TERM, or KILL)
        assert json.loads(bx("inspect", "waited").stdout)[0]["status"] == "running"
    finally:
        bx("rm", "-f", "waited")


def _record(name: str) -> dict[str, object]:
    record: dict[str, object] = json.loads(bx("inspect", name).stdout)[0]
    return record


def _until(name: str, done: object, timeout_s: float = 120) -> dict[str, object]:
    """The box's record once `done(record)` holds."""
    deadline = time.monotonic() + timeout_s
    while not done(record := _record(name)):  # type: ignore[operator]
        assert time.monotonic() < deadline, record
        time.sleep(0.2)
    return record


def test_on_failure_restarts_a_failing_box_n_times_then_leaves_it() -> None:
    """docker's --restart on-failure:2: two starts again after the first run, each
    counted; then the box stays exited with its code."""
    assert bx("run", "-d", "--name", "flaky", "--restart", "on-failure:2", IMAGE, "sh", "-c",
              "echo ran; exit 3").returncode == 0
    try:
        record = _until("flaky", lambda r: r["restart_count"] == 2 and r["status"] == "exited")
        assert record["exit_code"] == 3
        time.sleep(2)  # (and no third start)
        assert (_record("flaky")["restart_count"], _record("flaky")["status"]) == (2, "exited")
        assert bx("logs", "flaky").stdout == b"ran\n" * 3
        assert bx("inspect", "-f", "{{.RestartCount}}", "flaky").stdout == b"2\n"
        assert bx("start", "flaky").returncode == 0  # (by hand: counted from 0 again)
        _until("flaky", lambda r: r["status"] == "exited" and r["restart_count"] == 2)
    finally:
        bx("rm", "-f", "flaky")


def test_always_restarts_a_box_until_it_is_stopped_by_hand() -> None:
    assert bx("run", "-d", "--name", "steady", "--restart", "always", IMAGE, "sh", "-c",
              "echo up; sleep 1").returncode == 0
    try:
        _until("steady", lambda r: int(r["restart_count"]) >= 1)  # type: ignore[call-overload]
        assert bx("stop", "-t", "0", "steady").returncode == 0
        stopped = _until("steady", lambda r: r["status"] == "exited")
        time.sleep(3)  # (longer than its backoff: a policy start would have come)
        again = _record("steady")
        assert (again["status"], again["restart_count"]) == ("exited", stopped["restart_count"])
    finally:
        bx("rm", "-f", "steady")


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_box_waiting_for_its_restart_shows_as_restarting_until_stopped(how: str) -> None:
    """docker's "Restarting (1) ...": listed by a plain ps, State.Status restarting;
    a stop (or kill) during that wait leaves it exited for good, with its exit code (a
    kill said 137: nothing was killed)."""
    box_id = bx("run", "-d", "--name", "looping", "--restart", "always", IMAGE, "sh", "-c",
                "exit 1").stdout.decode().strip()
    try:
        # The first waits are 0.1, 0.2, 0.4 s: too short for two ps in a row to both see
        # one. From the fifth restart on the box waits 3.2 s and more.
        deadline = time.monotonic() + 180
        while True:  # (ps' restarting: the wait between two starts, not a start's boot)
            seen = bx("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "looping"
                      ).stdout.decode().split()
            rows = json.loads(bx("ps", "-a", "--format", "json").stdout)
            waiting = [r["status"] for r in rows if r["name"] == "looping"] == ["restarting"]
            if seen[0] == "restarting" and int(seen[1]) >= 5 and waiting:
                break
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        rows = json.loads(bx("ps", "--format", "json").stdout)  # (no -a)
        assert [r["status"] for r in rows if r["name"] == "looping"] == ["restarting"]
        assert bx("ps", "-q", "-f", "status=restarting").stdout.decode().split() == [
            box_id[:12]]
        while True:  # (kill is refused while the policy's start boots it: docker's)
            done = bx(how, "looping")
            if not (how == "kill" and b"is restarting" in done.stderr):
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert done.returncode == 0, done.stderr
        state = bx("inspect", "-f", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}",
                   "looping").stdout
        status, count, code = state.decode().split()
        assert (status, code) == ("exited", "1")
        time.sleep(min(60.0, 0.1 * 2 ** int(count)) + 2)  # (past its wait: it gave up)
        assert bx("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "looping"
                  ).stdout.decode().split() == ["exited", count]
    finally:
        bx("rm", "-f", "looping")


def test_update_gives_a_running_box_a_restart_policy_and_a_size_for_its_next_start() -> None:
    """docker's update: --restart counts from the next end of the main process; --cpus,
    --memory and --pids-limit from the box's next start (its VM has them), said so."""
    assert bx("run", "-d", "--name", "grown", IMAGE, "sh", "-c",
              "nproc; sleep 2").returncode == 0
    try:
        updated = bx("update", "--restart", "always",
                     "--cpus", "2", "--pids-limit", "50", "grown")
        assert updated.returncode == 0, updated.stderr
        assert updated.stdout == b"grown\n"
        assert b"runs on with its CPUs, memory and pids limit until it starts again" in (
            updated.stderr)
        # its main process ends: the policy starts it again, on the new size
        record = _until("grown", lambda r: int(r["restart_count"]) >= 1)  # type: ignore[call-overload]
        assert record["config"]["cpus"] == 2  # type: ignore[index]
        _until("grown", lambda r: r["status"] == "running")
        assert bx("exec", "grown", "cat", "/sys/fs/cgroup/pids.max").stdout == b"50\n"
        assert bx("logs", "grown").stdout.split()[:2] == [b"1", b"2"]
        # back to no: the next end is the last
        assert bx("update", "--restart", "no", "grown").returncode == 0
        final = _until("grown", lambda r: r["status"] == "exited")
        time.sleep(3)  # (past its backoff: no start came)
        assert _record("grown")["restart_count"] == final["restart_count"]
    finally:
        bx("rm", "-f", "grown")
