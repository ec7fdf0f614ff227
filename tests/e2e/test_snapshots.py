"""Snapshots, memory checkpoints and warm starts, on real VMs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, assert_clock_is_the_hosts, boxlite_bin, bx

COUNTER = ("i=0; while true; do i=$((i+1)); echo $i > /run/count; echo $i >> /root/log; "
           "sleep 0.2; done")


def out(*args: str) -> str:
    result = bx(*args)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


def one_line_error(result: subprocess.CompletedProcess[bytes], needle: str) -> None:
    assert result.returncode == 125, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    lines = [line for line in lines if "KVM is not usable" not in line]
    assert lines and lines[0].startswith("boxlite: ") and needle in lines[0], lines
    assert len(lines) <= 2


def count(box: str) -> int:
    return int(out("exec", box, "cat", "/run/count"))



def test_checkpoint_resumes_a_process_that_keeps_counting(e2e_home: Path) -> None:
    box = out("run", "-d", IMAGE, "sh", "-c", COUNTER)
    try:
        time.sleep(2)
        before_checkpoint = count(box)
        out("snapshot", "create", "--memory", box, "ck")
        out("exec", box, "touch", "/root/after-checkpoint")
        out("stop", "-t", "1", box)
        out("start", "--checkpoint", "ck", box)
        first = count(box)
        time.sleep(1.5)
        second = count(box)
        # the same process counts on from where the checkpoint caught it (a fresh
        # start would count from 1) ...
        assert before_checkpoint <= first < second, (before_checkpoint, first, second)
        # ... on the disk as it was at that instant
        assert bx("exec", box, "test", "-e", "/root/after-checkpoint").returncode == 1
        guest_now = float(out("exec", box, "date", "+%s.%N"))
        assert abs(guest_now - time.time()) < 2.0  # the clock was reset after the restore
        assert_clock_is_the_hosts(e2e_home, box)
        listing = json.loads(out("snapshot", "ls", "--format", "json", box))
        assert [(s["name"], s["memory"]) for s in listing] == [("ck", True)]
        assert listing[0]["created"].endswith("Z")  # (RFC 3339, UTC, as every JSON time)
        # another box from the same checkpoint: the same process, on its own disk
        copy = out("run", "-d", "--from", f"{box}:ck")
        try:
            assert count(copy) >= before_checkpoint
            assert bx("exec", copy, "test", "-e", "/root/after-checkpoint").returncode == 1
            out("exec", copy, "touch", "/root/only-in-the-copy")
            assert bx("exec", box, "test", "-e", "/root/only-in-the-copy").returncode == 1
            one_line_error(bx("rm", "-f", box), "built on its snapshots")
            one_line_error(bx("run", "--from", f"{box}:nope"), "no snapshot")
            one_line_error(bx("run", "--from", f"{box}:ck", IMAGE), "--from takes no IMAGE")
        finally:
            bx("rm", "-f", copy)
        check_a_checkpoint_needs_its_own_payload(box, e2e_home)
    finally:
        bx("rm", "-f", box)


def test_a_foreground_run_from_a_checkpoint_attaches_and_honours_its_options() -> None:
    """`run --from` without -d attaches to the resumed main process, --rm removes the
    box after it, and options that cannot apply to a resumed VM are refused."""
    # (a second after the go: the exec that gave it ends before the --rm box is killed)
    waiter = ("echo begun; while [ ! -e /run/go ]; do sleep 0.1; done; sleep 1; "
              "echo finished; exit 7")
    box = out("run", "-d", IMAGE, "sh", "-c", waiter)
    try:
        out("snapshot", "create", "--memory", box, "mid")
        before = out("ps", "-a", "-q").split()
        one_line_error(bx("run", "--from", f"{box}:mid", "--cpus", "2", "-e", "A=1"),
                       "--from cannot be combined with --cpus, --env")
        assert out("ps", "-a", "-q").split() == before
        resumed = subprocess.Popen([boxlite_bin(), "run", "--rm", "--name", "resumed",
                                    "--from", f"{box}:mid"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while bx("exec", "resumed", "true").returncode != 0:
                assert resumed.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
            # (the restored NIC keeps the checkpoint's MAC: inspect says that one)
            guest_mac = out("exec", "resumed", "cat", "/sys/class/net/eth0/address").strip()
            assert out("inspect", "-f", "{{.NetworkSettings.MacAddress}}", "resumed"
                       ).strip() == guest_mac
            out("exec", "resumed", "touch", "/run/go")
            stdout, stderr = resumed.communicate(timeout=120)
        finally:
            resumed.kill()
        assert resumed.returncode == 7, stderr.decode()
        assert b"finished" in stdout
        assert out("ps", "-a", "-q").split() == before  # --rm: the box is gone
    finally:
        bx("rm", "-f", box)


def check_a_checkpoint_needs_its_own_payload(box: str, home: Path) -> None:
    """The checkpoint names the payload its memory runs on; once that payload is gone
    (an upgrade built another, a build pruned this one), resuming it is refused before
    anything changes: no new box, no rolled-back disk."""
    [memdir] = (home / "boxes" / box / "disks").rglob("*.memory")
    name = next(b["name"] for b in json.loads(out("ps", "--format", "json")) if b["id"] == box)
    record = json.loads((memdir / "payload.json").read_text())
    payload_root = Path(record["root"])
    assert (payload_root / "agent-root.ext4").is_file()
    assert record["payload"] == payload_root.name
    (memdir / "payload.json").write_text(json.dumps(
        {"payload": "0" * 16, "root": "/nonexistent/payload", "agent_root": [1, 2]}))
    boxes_before = out("ps", "-a", "-q").split()
    one_line_error(bx("run", "--from", f"{box}:ck"), "no longer on this machine")
    assert out("ps", "-a", "-q").split() == boxes_before
    out("exec", box, "touch", "/root/after-resume")
    out("stop", "-t", "1", box)
    refused = bx("start", "--checkpoint", "ck", box)
    one_line_error(refused, "payload 0000000000000000")
    assert f"boxlite snapshot restore {name} ck" in refused.stderr.decode()
    out("start", box)
    assert bx("exec", box, "test", "-e", "/root/after-resume").returncode == 0


def test_disk_snapshot_restore_and_its_refusals() -> None:
    box = out("run", "-d", IMAGE, "sleep", "1000")
    try:
        out("exec", box, "sh", "-c", "echo before > /root/marker && sync")
        out("exec", box, "sh", "-c", "echo unsynced > /root/unsynced")  # FIFREEZE flushes it
        out("snapshot", "create", box, "s1")
        out("exec", box, "sh", "-c", "rm /root/marker; echo after > /root/after")
        one_line_error(bx("snapshot", "restore", box, "s1"), "stop it first")
        one_line_error(bx("snapshot", "create", box, "s1"), "already has a snapshot named")
        one_line_error(bx("snapshot", "create", box, "../x"), "invalid snapshot name")
        out("stop", "-t", "1", box)
        one_line_error(bx("snapshot", "restore", box, "nope"), "no snapshot")
        one_line_error(bx("snapshot", "create", "--memory", box, "m"), "not running")
        out("snapshot", "restore", box, "s1")
        out("start", box)
        assert out("exec", box, "cat", "/root/marker", "/root/unsynced") == "before\nunsynced"
        assert bx("exec", box, "test", "-e", "/root/after").returncode == 1
        # its disk is built on s1 now: not while it runs; stopped, s1 merges into it
        one_line_error(bx("snapshot", "rm", box, "s1"), "while the box runs")
        out("stop", "-t", "1", box)
        out("snapshot", "rm", box, "s1")
        assert json.loads(out("snapshot", "ls", "--format", "json", box)) == []
        out("start", box)
        assert out("exec", box, "cat", "/root/marker", "/root/unsynced") == "before\nunsynced"
    finally:
        bx("rm", "-f", box)


def test_a_checkpoint_waits_for_a_resize_and_a_vm_that_cannot_restore_says_why(
        e2e_home: Path) -> None:
    """A box `update` resized runs with its old size until it starts again: a checkpoint
    then could never be resumed (QEMU refuses RAM of another size; update refuses to
    size it back), so it is refused with the fix. A VM that cannot load a checkpoint
    fails the start with QEMU's own words (it waited 30 s for QMP, then blamed QMP)."""
    box = out("run", "-d", IMAGE, "sleep", "1000")
    try:
        out("update", "-m", "768m", box)
        refused = bx("snapshot", "create", "--memory", box, "cp")
        one_line_error(refused, "runs with 1 CPU(s) and 512 MiB, but `update` gave it 1 and "
                                "768 MiB from its next start")
        assert b"boxlite restart" in refused.stderr
        assert json.loads(out("snapshot", "ls", "--format", "json", box)) == []
        out("restart", "-t", "1", box)
        out("snapshot", "create", "--memory", box, "cp")
        out("stop", "-t", "1", box)
        # (a checkpoint and a box of different sizes: what an older boxlite allowed)
        state_file = e2e_home / "boxes" / box / "state.json"
        record = json.loads(state_file.read_text())
        record["config"]["memory_mib"] = 512
        state_file.write_text(json.dumps(record))
        failed = bx("start", "--checkpoint", "cp", box)
        assert failed.returncode == 125
        assert b"the VM could not be restored" in failed.stderr, failed.stderr
        assert b"Size mismatch" in failed.stderr, failed.stderr
    finally:
        bx("rm", "-f", box)


def test_killing_the_cli_mid_snapshot_leaves_the_box_usable() -> None:
    box = out("run", "-d", IMAGE, "sh", "-c", COUNTER)
    try:
        time.sleep(1)
        proc = subprocess.Popen([boxlite_bin(), "snapshot", "create", box, "k"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.4)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 60
        while True:  # the detached worker finishes, or the guest thaws by itself
            result = bx("exec", "--timeout", "10", box, "sh", "-c", "echo ok > /root/probe && cat /run/count")
            if result.returncode == 0:
                break
            assert time.monotonic() < deadline, result.stderr.decode()
            time.sleep(1)
        first = count(box)
        time.sleep(1)
        assert count(box) > first  # not paused, not frozen
        out("snapshot", "create", box, "after-kill")
        names = [s["name"] for s in json.loads(out("snapshot", "ls", "--format", "json", box))]
        assert "after-kill" in names
    finally:
        bx("rm", "-f", box)


IDENTITY = ("import os, socket, time; print(os.urandom(16).hex(), "
            "open('/proc/sys/kernel/random/uuid').read().strip(), socket.gethostname(), time.time())")


# A warm start maps its template's RAM image (copy-on-write) and loads the devices' state.
RESTORED = "/ram.img,share=off"


def shim_log(home: Path, box: str) -> str:
    return next((home / "boxes").glob(f"{box}*/shim.log")).read_text()


def shim_command(home: Path, box: str) -> str:
    log = shim_log(home, box)
    return [line for line in log.splitlines() if "starting VMM" in line][-1]  # the last start


def test_warm_starts_give_each_box_its_own_identity(e2e_home: Path) -> None:
    out("run", "--rm", IMAGE, "true")  # leaves the template when there is none yet
    templates = list((e2e_home / "cache" / "templates").glob("*/ram.img"))
    assert templates, "the first cold run saved no warm-start template"
    seen = []
    boxes = []
    try:
        for _ in range(2):
            box = out("run", "-d", IMAGE, "python3", "-u", "-c", IDENTITY + "; time.sleep(600)")
            boxes.append(box)
            assert RESTORED in shim_command(e2e_home, box)  # restored, not booted
            # its shim started with the CLI (shim/prestart.py) and was handed the box
            assert "prestarted: the CLI handed" in shim_log(e2e_home, box)
        for box in boxes:
            deadline = time.monotonic() + 30
            while len((line := out("logs", box)).split()) < 4:  # (-u: written piecemeal)
                assert time.monotonic() < deadline
                time.sleep(0.5)
            seen.append(line.split())
        (rand_a, uuid_a, host_a, t_a), (rand_b, uuid_b, host_b, t_b) = seen
        assert rand_a != rand_b and uuid_a != uuid_b and host_a != host_b
        assert host_a == boxes[0][:12] and host_b == boxes[1][:12]
        for t in (t_a, t_b):
            assert abs(float(t) - time.time()) < 60  # set at Init, not the template's time
        cold = out("run", "-d", "--cold", IMAGE, "sleep", "600")
        boxes.append(cold)
        assert "-incoming" not in shim_command(e2e_home, cold)
        assert out("exec", cold, "hostname") == cold[:12]
        guest_now = float(out("exec", boxes[0], "date", "+%s.%N"))
        assert abs(guest_now - time.time()) < 2.0
        for box in (boxes[0], cold):  # (warm and cold: to within milliseconds)
            assert_clock_is_the_hosts(e2e_home, box)
    finally:
        bx("rm", "-f", *boxes)


def test_a_broken_template_falls_back_to_a_cold_start(e2e_home: Path) -> None:
    shutil.rmtree(e2e_home / "cache" / "templates", ignore_errors=True)
    out("run", "--rm", IMAGE, "true")  # a cold start: it leaves this run's template
    templates = list((e2e_home / "cache" / "templates").glob("*/device.state"))
    assert len(templates) == 1
    os.truncate(templates[0], 64)  # QEMU cannot load it: the restore fails
    before = bx("ps", "-a", "-q").stdout
    proc = bx("run", "--rm", IMAGE, "echo", "still works")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"still works\n"
    assert b"the warm start failed" in proc.stderr and b"starting cold" in proc.stderr
    assert not any(memory.exists() for memory in templates)  # discarded
    assert bx("ps", "-a", "-q").stdout == before  # --rm: nothing left behind


@pytest.mark.parametrize(("args", "says"), [
    (["-u", "nosuchuser"], "unable to find user nosuchuser"),
    (["--tmpfs", "/etc/hosts/x"], "--tmpfs /etc/hosts/x: cannot mount there: Not a directory"),
    (["-v", "/tmp:/etc/passwd/x"], "volume /etc/passwd/x: cannot mount there: Not a directory"),
])
def test_a_box_the_guest_refuses_fails_at_once_and_keeps_the_template(
        e2e_home: Path, args: list[str], says: str) -> None:
    """Settings of the box's own that the guest agent refuses (an unknown user, a mount
    on a path the image has a file at) fail the warm start in one line: no cold retry,
    the template stays for the next box."""
    out("run", "--rm", IMAGE, "true")  # this run's template exists now
    templates = sorted((e2e_home / "cache" / "templates").glob("*/device.state"))
    assert templates
    before = bx("ps", "-a", "-q").stdout
    refused = bx("run", "--rm", *args, IMAGE, "true")
    one_line_error(refused, says)
    assert b"warm start failed" not in refused.stderr
    assert all(template.exists() for template in templates)
    assert bx("ps", "-a", "-q").stdout == before  # --rm: nothing left behind


MARK = "cat /root/mark 2>/dev/null; echo run >> /root/mark; ls /proc/self/fd >/dev/null"


def test_runs_from_a_primed_template_each_get_a_fresh_disk_and_restarts_keep_theirs(
        e2e_home: Path) -> None:
    shutil.rmtree(e2e_home / "cache" / "templates", ignore_errors=True)
    out("run", "--rm", IMAGE, "true")  # cold: leaves the primed template (disk mounted)
    layers = list((e2e_home / "cache" / "templates").glob("*/rootfs.qcow2"))
    assert len(layers) == 1, "the first run saved no primed template"
    ram = layers[0].with_name("ram.img")
    ram_digest = hashlib.sha256(ram.read_bytes()).hexdigest()
    boxes = []
    try:
        for _ in range(2):  # each restored with a copy of the template's disk
            box = out("run", "-d", IMAGE, "sh", "-c", MARK)
            boxes.append(box)
            assert RESTORED in shim_command(e2e_home, box)
            assert out("wait", box) == "0"
            assert out("logs", box) == ""  # the other box's file is not on this disk
        # the template's disk and RAM are untouched by the boxes made from it
        assert hashlib.sha256(ram.read_bytes()).hexdigest() == ram_digest
        assert not ram.with_name("memory.state").exists()
        assert bx("run", "--rm", IMAGE, "test", "!", "-e", "/root/mark").returncode == 0
        # a restart has a used disk: no primed template for it (a plain one, saved by
        # its first cold start, then warm); it sees what it wrote, twice over
        first = boxes[0]
        for expected in ("run", "run\nrun"):
            out("start", first)
            assert out("wait", first) == "0"
            assert out("logs", first).endswith(expected)
        assert RESTORED in shim_command(e2e_home, first)
        assert len(list((e2e_home / "cache" / "templates").glob("*/ram.img"))) == 2
    finally:
        bx("rm", "-f", *boxes)
