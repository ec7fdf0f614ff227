"""Processes that die at the worst moment: the shim or QEMU killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, bx, vm_processes

pytestmark = pytest.mark.e2e


def box_record(ref: str) -> dict[str, object]:
    proc = bx("inspect", ref)
    assert proc.returncode == 0, proc.stderr
    record: dict[str, object] = json.loads(proc.stdout)[0]
    return record


def pid_from(path: Path) -> int:
    return int(json.loads(path.read_text())["pid"])


def wait_gone(pid: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} is still alive")


@pytest.mark.parametrize("victim", ["shim.pid", "vmm.pid"])
def test_killed_shim_or_vm_shows_as_exited_and_box_recovers(victim: str, e2e_home: Path) -> None:
    name = f"fault-{victim.split('.')[0]}"
    assert bx("run", "-d", "--name", name, IMAGE, "sleep", "600").returncode == 0
    try:
        box_dir = Path(str(box_record(name)["paths"]["dir"]))  # type: ignore[index]
        vmm_pid = pid_from(box_dir / "vmm.pid")
        os.kill(pid_from(box_dir / victim), signal.SIGKILL)
        wait_gone(vmm_pid)  # the VM never outlives its shim
        deadline = time.monotonic() + 30
        while box_record(name)["status"] != "exited" and time.monotonic() < deadline:
            time.sleep(0.2)
        record = box_record(name)
        assert record["status"] == "exited"
        assert record["error"], record
        ps = json.loads(bx("ps", "-a", "--format", "json").stdout)
        assert [b["status"] for b in ps if b["name"] == name] == ["exited"]
        assert not [p for p in vm_processes(e2e_home) if str(box_dir) in p]

        assert bx("start", name).returncode == 0  # the box is usable again
        assert bx("exec", name, "echo", "alive").stdout == b"alive\n"
    finally:
        assert bx("rm", "-f", name).returncode == 0
    assert bx("inspect", name).returncode == 125


def test_a_rm_box_whose_shim_was_killed_is_removed_by_the_next_ps(e2e_home: Path) -> None:
    """`run -d --rm`, then its shim SIGKILLed: nothing was left to remove the box; the
    next listing does (its anonymous volume too), as docker's daemon does on its return."""
    run = bx("run", "-d", "--rm", "--name", "rm-orphan", "-v", "/data", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    box_dir = Path(str(box_record("rm-orphan")["paths"]["dir"]))  # type: ignore[index]
    volumes_before = bx("volume", "ls", "-q").stdout.split()
    vmm_pid = pid_from(box_dir / "vmm.pid")
    os.kill(pid_from(box_dir / "shim.pid"), signal.SIGKILL)
    wait_gone(vmm_pid)
    assert "rm-orphan" not in bx("ps", "-a").stdout.decode()
    assert not box_dir.exists()
    assert bx("inspect", "rm-orphan").returncode == 125
    assert len(bx("volume", "ls", "-q").stdout.split()) == len(volumes_before) - 1


def test_a_disk_another_process_holds_fails_the_start_not_the_template(e2e_home: Path) -> None:
    """A disk tool still writing the box's disk (QEMU's write lock taken) makes the
    start fail in one line that says so; the warm-start template is kept, not blamed."""
    import subprocess

    assert bx("run", "--name", "locked", IMAGE, "true").returncode == 0  # (its disk used)
    templates = sorted(p.name for p in (e2e_home / "cache" / "templates").iterdir())
    assert templates
    disk = box_record("locked")["paths"]["rootfs_disk"]  # type: ignore[index]
    holder = subprocess.Popen(["qemu-io", "-c", "sleep 120000", str(disk)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        started = bx("start", "locked")
        assert started.returncode == 125
        assert started.stderr.decode().splitlines()[0] == (
            "boxlite: box locked cannot start: another process is using its disk")
        assert sorted(p.name for p in (e2e_home / "cache" / "templates").iterdir()) == templates
        holder.kill()
        holder.wait(10)
        assert bx("start", "locked").returncode == 0
    finally:
        holder.kill()
        bx("rm", "-f", "locked")


@pytest.mark.parametrize("mode", [["--rm"], []], ids=["rm", "kept"])
def test_a_foreground_run_whose_vm_is_killed_says_so(mode: list[str]) -> None:
    """QEMU killed under a foreground run (the host's OOM killer): 137, as a killed
    command's, with one line that says the VM was killed; an rm -f from another
    shell ends it as docker's does (137, not a word)."""
    import subprocess

    from tests.e2e.conftest import boxlite_bin

    for name, end in (("vm-killed", "vmm"), ("rm-forced", "rm")):
        proc = subprocess.Popen([boxlite_bin(), "run", *mode, "--name", name, IMAGE, "sh",
                                 "-c", "echo started; exec sleep 600"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
            if end == "vmm":
                box_dir = Path(str(box_record(name)["paths"]["dir"]))  # type: ignore[index]
                os.kill(pid_from(box_dir / "vmm.pid"), signal.SIGKILL)
            else:
                assert bx("rm", "-f", name).returncode == 0
            _, err = proc.communicate(timeout=120)
            # (less the first boot's "KVM is not usable" warning)
            said = [line for line in err.decode().splitlines() if "warning:" not in line]
            if end == "vmm":
                assert (proc.returncode, said) == (137, [
                    "boxlite: the box stopped before its command ended: the VM was killed "
                    "by signal 9"]), err
            else:
                assert (proc.returncode, said) == (137, []), err
        finally:
            proc.kill()
            proc.wait(30)
            bx("rm", "-f", name)


def test_a_host_without_qemu_fails_the_start_in_one_line(tmp_path: Path) -> None:
    """QEMU uninstalled after the box was made: start and run say so (and where to
    look), the box stays as it was, and nothing is left of the run --rm box."""
    path = tmp_path / "bin"
    path.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for tool in Path(directory).glob("*") if Path(directory).is_dir() else ():
            if not tool.name.startswith("qemu-system-") and not (path / tool.name).exists():
                (path / tool.name).symlink_to(tool)
    without_qemu = {"PATH": str(path)}
    assert bx("create", "--name", "no-qemu", IMAGE, "true").returncode == 0
    try:
        boxes_before = bx("ps", "-aq").stdout
        for args in (["start", "no-qemu"], ["run", "--rm", IMAGE, "true"]):
            proc = bx(*args, env=without_qemu)
            said = [line for line in proc.stderr.decode().splitlines() if "warning:" not in line]
            assert (proc.returncode, said) == (125, [
                "boxlite: qemu-system-x86_64 is not installed", "  hint: run: boxlite doctor"])
        assert bx("ps", "-aq").stdout == boxes_before
        assert bx("inspect", "-f", "{{.State.Status}}", "no-qemu").stdout == b"created\n"
    finally:
        bx("rm", "-f", "no-qemu")
