"""Spare VMs (runtime/spares.py, shim/spare.py) without a VM: the settings, the claim
handshake against a listener of the test's own, the hand-over, the move into a box
(a listening socket keeps working when its directory is renamed), and the registry."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.spares import (
    DEFAULT_SPARE_IDLE_S,
    SPARE_ID_LEN,
    Spares,
    spare_idle_s,
    spares_enabled,
)
from boxlite_cli.shim.child import OtherProcess
from boxlite_cli.shim.prestart import receive_box
from boxlite_cli.shim.spare import _move_into
from boxlite_cli.shim.spareclaim import CLAIMED, SPARE_META, adopt_socket, claim_spare, lock_path
from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.state.boxes import new_box_id
from boxlite_cli.state.boxfiles import BoxFiles
from boxlite_cli.state.flock import FileLock
from boxlite_cli.state.pidfile import ProcessRecord, write_pidfile
from boxlite_cli.vmm.base import VmSpec


def test_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOXLITE_SPARES", raising=False)
    monkeypatch.delenv("BOXLITE_SPARE_IDLE_S", raising=False)
    assert spares_enabled() is True
    assert spare_idle_s() == DEFAULT_SPARE_IDLE_S
    monkeypatch.setenv("BOXLITE_SPARES", "0")
    monkeypatch.setenv("BOXLITE_SPARE_IDLE_S", "2.5")
    assert spares_enabled() is False
    assert spare_idle_s() == 2.5
    monkeypatch.setenv("BOXLITE_SPARES", "")
    monkeypatch.setenv("BOXLITE_SPARE_IDLE_S", ".5")
    assert spares_enabled() is True and spare_idle_s() == 0.5
    for variable, value in (("BOXLITE_SPARES", "true"), ("BOXLITE_SPARE_IDLE_S", "-1"),
                            ("BOXLITE_SPARE_IDLE_S", "nan"), ("BOXLITE_SPARE_IDLE_S", "1e9"),
                            ("BOXLITE_SPARE_IDLE_S", "1_0"), ("BOXLITE_SPARE_IDLE_S", "0x10")):
        monkeypatch.setenv(variable, value)
        with pytest.raises(UsageError, match=f"invalid {variable}"):
            spares_enabled()
            spare_idle_s()
        monkeypatch.delenv(variable)


@pytest.mark.parametrize("value", ["maybe", "true", "2", "00"])
def test_a_warm_setting_that_is_neither_1_nor_0_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                           value: str) -> None:
    """(BOXLITE_WARM=maybe was taken silently, as warm)"""
    from boxlite_cli.runtime.envswitch import env_switch

    for on, off in (("1", "0"), (" 1 ", " 0")):
        monkeypatch.setenv("BOXLITE_WARM", on)
        assert env_switch("BOXLITE_WARM") is True
        monkeypatch.setenv("BOXLITE_WARM", off)
        assert env_switch("BOXLITE_WARM") is False
    monkeypatch.setenv("BOXLITE_WARM", value)
    with pytest.raises(UsageError, match=f"invalid BOXLITE_WARM='{value}'") as refused:
        env_switch("BOXLITE_WARM")
    assert refused.value.hint == "use 1 (the default) or 0"


def test_a_spare_sits_where_a_box_would_for_its_sockets(tmp_path: Path) -> None:
    """Same path length as a box directory: both sockets directories are inside, or
    both under /tmp, so the rename into the box stays on one file system."""
    box = tmp_path / "boxes" / new_box_id()
    spare = tmp_path / "spares" / ("a" * SPARE_ID_LEN)
    assert len(str(box)) == len(str(spare))
    assert BoxFiles(box).sockets.is_relative_to(box) == BoxFiles(spare).sockets.is_relative_to(spare)


def _listen(spare_dir: Path) -> socket.socket:
    path = adopt_socket(spare_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    listener.listen(4)
    return listener


def test_a_claim_is_answered_then_the_box_is_handed_over(tmp_path: Path) -> None:
    spare_dir = tmp_path / "spare"
    listener = _listen(spare_dir)
    got: dict[str, object] = {}

    def spare() -> None:
        conn, _ = listener.accept()
        conn.sendall(CLAIMED)
        handed = receive_box(conn)
        assert handed is not None
        got["box"] = handed.box_dir
        got["log"] = os.read(handed.log_fd, 100)
        os.write(handed.ready_fd, b"ready\n")
        for fd in (handed.log_fd, handed.ready_fd, *handed.output_fds):
            os.close(fd)
        got["outputs"] = len(handed.output_fds)

    thread = threading.Thread(target=spare)
    thread.start()
    claimed = claim_spare(spare_dir, pid=os.getpid())
    assert claimed is not None and claimed.directory == spare_dir
    log_r, log_w = os.pipe()
    ready_r, ready_w = os.pipe()
    os.write(log_w, b"the log")
    claimed.hand_over(tmp_path / "box", log_r, ready_w, (1, 2))
    for fd in (log_r, log_w, ready_w):
        os.close(fd)
    thread.join(5)
    assert got == {"box": tmp_path / "box", "log": b"the log", "outputs": 2}
    assert os.read(ready_r, 100) == b"ready\n"
    os.close(ready_r)
    listener.close()


def test_no_claim_without_a_ready_spare(tmp_path: Path) -> None:
    assert claim_spare(tmp_path / "none", pid=1) is None  # no socket
    spare_dir = tmp_path / "spare"
    listener = _listen(spare_dir)

    def refuse() -> None:  # taken by another CLI a moment before: closed without "ok"
        conn, _ = listener.accept()
        conn.close()

    thread = threading.Thread(target=refuse)
    thread.start()
    assert claim_spare(spare_dir, pid=1) is None
    thread.join(5)
    listener.close()


def test_moving_into_a_box_keeps_the_listening_sockets(tmp_path: Path) -> None:
    spare = BoxFiles(tmp_path / "spares" / ("b" * SPARE_ID_LEN))
    box = BoxFiles(tmp_path / "boxes" / new_box_id())
    for files in (spare, box):
        (files.dir / "disks").mkdir(parents=True)
    spare.sockets.mkdir(parents=True)
    for path, data in ((spare.rootfs_disk, b"spare disk"), (box.rootfs_disk, b"fresh disk"),
                       (spare.console_log, b"console"), (spare.dir / "vmm.log", b"vmm")):
        path.write_bytes(data)
    write_pidfile(spare.vmm_pid, ProcessRecord.current())
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(spare.control_socket))
    server.listen(1)
    _move_into(spare, box)
    assert box.rootfs_disk.read_bytes() == b"spare disk"
    assert box.console_log.read_bytes() == b"console"
    assert (box.dir / "vmm.log").read_bytes() == b"vmm"
    assert box.vmm_pid.exists() and not spare.vmm_pid.exists()
    assert not spare.sockets.exists()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(box.control_socket))  # the same listening socket, under the box
    conn, _ = server.accept()
    client.sendall(b"x")
    assert conn.recv(1) == b"x"
    for s in (client, conn, server):
        s.close()


def _plant(root: Path, key: str, pid: int | None, ready: bool) -> Path:
    directory = root / ("c" * (SPARE_ID_LEN - len(key)) + key)
    directory.mkdir(parents=True)
    (directory / SPARE_META).write_text(json.dumps({"key": key, "template": "/t", "idle_s": 5}))
    if pid is not None:
        write_pidfile(BoxFiles(directory).shim_pid, ProcessRecord.of(pid)  # type: ignore[arg-type]
                      )
    if ready:
        adopt_socket(directory).parent.mkdir(parents=True, exist_ok=True)
        adopt_socket(directory).write_bytes(b"")
    return directory


def test_the_registry_knows_ready_spares_and_stops_them(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        spares = Spares(tmp_path)
        _plant(tmp_path, "k1", sleeper.pid, ready=True)
        _plant(tmp_path, "k2", None, ready=True)  # its process is gone
        broken = _plant(tmp_path, "k3", None, ready=False)
        (broken / SPARE_META).write_text('{"key": 5')  # (or none yet: being made)
        found = {s.key: (s.pid, s.ready) for s in spares.list()}
        assert found == {"k1": (sleeper.pid, True), "k2": (None, False), "": (None, False)}
        assert spares.claim("k2") is None  # not ready: no process
        assert spares.claim("") is None  # unknown template: never taken
        (tmp_path / "k9.lock").write_bytes(b"")
        assert spares.stop_all(wait_s=0) == 3
        assert sleeper.wait(10) == -15
        assert {s.key for s in spares.list()} <= {"k1"}  # the dead ones' are removed
        assert not (tmp_path / "k9.lock").exists()  # no spare held it
    finally:
        sleeper.kill()
        sleeper.wait()


def _launch() -> Launch:
    p = Path("/nonexistent")
    return Launch(driver="qemu", vm=VmSpec(kernel=p, initrd=p, agent_root=p, rootfs_disk=p,
                                           console_log=p, agent_socket=p, control_socket=p),
                  boot_timeout_s=30)


def test_no_second_spare_of_a_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its spare holds the template's lock while it lives: replenish makes none then."""
    monkeypatch.delenv("BOXLITE_SPARES", raising=False)
    spares = Spares(tmp_path)
    with FileLock(lock_path(tmp_path, "k"), timeout=0):
        spares.replenish("k", tmp_path / "template", _launch())
    assert [p.name for p in tmp_path.iterdir()] == ["k.lock"]
    monkeypatch.setenv("BOXLITE_SPARES", "0")
    spares.replenish("k", tmp_path / "template", _launch())
    assert [p.name for p in tmp_path.iterdir()] == ["k.lock"]


def test_replenish_meanwhile_runs_in_a_waited_for_thread_and_is_quiet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The next spare is made beside the box's command, by a thread the interpreter
    waits for at exit (not a daemon: a half-made spare would be left), and a failure
    in it says nothing (it would land after the command's output)."""
    monkeypatch.delenv("BOXLITE_SPARES", raising=False)
    made = threading.Event()
    spares = Spares(tmp_path)

    def slow_replenish(key: str, template: Path, launch: Launch) -> None:
        time.sleep(0.05)
        made.set()
        raise RuntimeError("boom")

    monkeypatch.setattr(spares, "replenish", slow_replenish)
    thread = spares.replenish_meanwhile("k", tmp_path / "template", _launch())
    assert not thread.daemon
    thread.join(10)
    assert made.is_set() and not thread.is_alive()
    assert capsys.readouterr().err == ""


def test_other_process_waits_through_a_pidfd() -> None:
    # It lives until its stdin closes (and 1 h at most).
    child = subprocess.Popen([sys.executable, "-c", "import select, sys; "
                              "select.select([sys.stdin], [], [], 3600)"],
                             stdin=subprocess.PIPE)
    assert child.stdin is not None
    try:
        other = OtherProcess(child.pid, ["sleeper"])
        assert other.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            other.wait(0.01)
        child.stdin.close()  # it ends
        assert other.wait(30) == 0  # (TimeoutExpired: the exit was not seen)
        assert other.poll() == 0
    finally:
        child.kill()
        child.wait()
