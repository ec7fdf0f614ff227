"""The prestarted shim (shim/prestart.py): when the console script starts one, that one
unused leaves nothing behind, and a hand-over to one that is gone says so."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from boxlite_cli.entry import wants_prestart
from boxlite_cli.shim.prestart import Prestarted


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "--rm", "img", "true"], True),
    (["--debug", "start", "web"], True),
    (["restart", "web"], True),
    (["ps", "-a"], False),
    (["exec", "web", "run"], False),  # the command is the first word only
    (["run", "--help"], False),
    (["-h", "run", "img"], False),
    (["run", "-h", "web", "img"], True),  # (run's -h: its --hostname, as docker's)
    (["start", "-h"], False),
    (["run", "img", "ls", "-h"], True),  # the box command's -h
    (["run", "--rm", "img", "grep", "--help"], True),
    ([], False),
    (["--debug"], False),
])
def test_only_the_commands_that_start_a_box_prestart_a_shim(
        args: list[str], expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOXLITE_PRESTART", raising=False)
    assert wants_prestart(args) is expected


def test_a_run_that_will_take_a_spare_prestarts_no_shim(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from boxlite_cli.shim.spareclaim import adopt_socket

    monkeypatch.delenv("BOXLITE_PRESTART", raising=False)
    monkeypatch.setenv("BOXLITE_HOME", str(tmp_path))
    spare = tmp_path / "spares" / ("a" * 63)
    spare.mkdir(parents=True)
    assert wants_prestart(["run", "img"])  # being made: not ready yet
    adopt_socket(spare).parent.mkdir(parents=True, exist_ok=True)
    adopt_socket(spare).write_bytes(b"")
    assert not wants_prestart(["run", "img"])
    assert wants_prestart(["start", "web"])  # (a box that ran before takes none)


def test_prestarting_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_PRESTART", "0")
    assert not wants_prestart(["run", "img"])


# A CLI that prestarts a shim, reports it, holds still, then exits without using it.
CLI = """
import os, sys, time
from boxlite_cli.shim import prestart
prestart.begin()
print(prestart._waiting.pid, flush=True)
sys.stdin.readline()
"""


def _fds(pid: int) -> set[str]:
    """What `pid` has open (one its imports closed meanwhile is left out)."""
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return targets


def test_an_unused_prestarted_shim_holds_nothing_of_ours_and_exits_with_us(
        tmp_path: Path) -> None:
    leak = open(tmp_path / "leak", "w")  # noqa: SIM115 (inherited by the CLI)
    cli = subprocess.Popen([sys.executable, "-c", CLI], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, pass_fds=(leak.fileno(),), text=True)
    assert cli.stdout is not None and cli.stdin is not None
    pid = int(cli.stdout.readline())
    deadline = time.monotonic() + 30
    while "--prestarted" not in Path(f"/proc/{pid}/cmdline").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    fds = _fds(pid)
    assert str(tmp_path / "leak") not in fds
    assert not any(target.startswith("pipe:") for target in fds), "not our stdio"
    assert os.getsid(pid) == pid, "a session of its own"
    cli.stdin.close()  # the CLI exits without handing it a box
    assert cli.wait(10) == 0
    while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
        assert time.monotonic() < deadline, "the prestarted shim did not exit"
        time.sleep(0.02)
    leak.close()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"


def test_handing_a_box_to_a_shim_that_is_gone_is_an_oserror(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.close()
    r, w = os.pipe()
    try:
        with pytest.raises(OSError):
            Prestarted(0, ours, []).hand_over(tmp_path, w, w, ())
    finally:
        os.close(r)
        os.close(w)


def test_a_child_that_becomes_a_shim_ignores_stops_until_its_handlers_are_in() -> None:
    """Not the CLI's handlers (the CLI's clean-up would run in the child), not the
    default (a stop would kill it while its VMM starts): ignored, across the exec; the
    stop-requested mark tells the shim (shim/main.py)."""
    import subprocess
    import sys

    script = ("import signal, subprocess, sys\n"
              "from boxlite_cli.shim.prestart import ignore_stop_signals\n"
              "signal.signal(signal.SIGTERM, lambda *a: sys.exit('the CLI handler ran'))\n"
              "ignore_stop_signals()\n"
              "subprocess.run([sys.executable, '-c', 'import os, signal, time; "
              "os.kill(os.getpid(), signal.SIGTERM); os.kill(os.getpid(), signal.SIGHUP); "
              "time.sleep(0.2); print(\"survived\")'], check=True)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stdout) == (0, "survived\n"), out.stderr
