"""boxprocs: /proc parsing, and a listing of this host's real /proc (our own namespace
standing for the box's)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.boxprocs import (
    ProcStat,
    box_processes,
    ns_pids,
    parse_stat,
    split_cmdline,
)

STAT_TAIL = ("S 1 7 7 0 -1 4194560 100 0 0 0 30 12 0 0 20 0 3 0 5000 8192000 250 "
             "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0")


def test_parse_stat_takes_a_name_with_spaces_and_parentheses() -> None:
    assert parse_stat(f"42 (a) b (c)) {STAT_TAIL}") == ProcStat(
        name="a) b (c)", state="S", ppid=1, cpu_ticks=42, threads=3, start_ticks=5000,
        rss_pages=250)


def test_parse_stat_refuses_what_is_cut_or_malformed() -> None:
    assert parse_stat("42 (x) S 1 2") is None
    assert parse_stat("no parentheses") is None
    assert parse_stat(f"42 (x) {STAT_TAIL.replace(' 30 ', ' x ')}") is None


def test_split_cmdline() -> None:
    assert split_cmdline(b"sleep\x0030\x00") == ["sleep", "30"]
    assert split_cmdline(b"nginx: master process") == ["nginx: master process"]  # rewritten
    assert split_cmdline(b"a\x00\x00b\x00") == ["a", "", "b"]
    assert split_cmdline(b"") == []  # a kernel thread, a zombie
    assert split_cmdline(b"\xff\x00") == ["\ufffd"]


def test_ns_pids_from_the_outermost_namespace_in() -> None:
    status = "Name:\tsleep\nUid:\t65534\t65534\t65534\t65534\nNSpid:\t812\t5\t1\n"
    assert ns_pids(status) == ([812, 5, 1], 65534)
    assert ns_pids("Name:\tx\n") is None


def test_box_processes_lists_a_namespace_from_proc() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.05)
        own = os.stat("/proc/self/ns/pid").st_ino
        listed = {p.pid: p for p in box_processes(own)}
        it = listed[child.pid]
        assert os.getpid() in listed
        assert it.argv == ["sleep", "30"] and it.name == "sleep"
        assert it.ppid == os.getpid() and it.uid == os.getuid()
        assert it.state in "RS" and it.threads == 1 and it.rss_bytes > 0
        assert abs(it.started - time.time()) < 60
        assert [p.pid for p in box_processes(own)] == sorted(listed)
    finally:
        child.kill()
        child.wait()


def test_box_processes_names_users_from_the_roots_passwd(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(f"me:x:{os.getuid()}:0::/:/bin/sh\n")
    own = os.stat("/proc/self/ns/pid").st_ino
    mine = [p for p in box_processes(own, str(tmp_path)) if p.pid == os.getpid()]
    assert mine[0].user == "me"
    assert next(p for p in box_processes(own) if p.pid == os.getpid()).user == ""


def test_another_namespace_lists_nothing_of_ours() -> None:
    assert box_processes(1) == []  # (no namespace has inode 1)


def test_command_lines_past_the_budget_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A box of many processes with long command lines fits one answer: past the budget,
    processes are listed by name only."""
    from boxlite_agent import boxprocs

    monkeypatch.setattr(boxprocs, "CMDLINES_MAX", 1)
    listed = box_processes(os.stat("/proc/self/ns/pid").st_ino)
    assert len(listed) > 1
    assert sum(1 for p in listed if p.argv) <= 1


def test_processes_of_a_nested_pid_namespace_are_listed_by_our_pids() -> None:
    """A box's `unshare --pid --fork sleep`: the sleep is the box's too, by its PID in
    the box's namespace (here: ours), its parent the unshare."""
    if os.geteuid() != 0:
        pytest.skip("unshare --pid needs root")
    marker = f"31.{os.getpid()}"
    child = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sleep", marker])
    try:
        own = os.stat("/proc/self/ns/pid").st_ino
        deadline = time.monotonic() + 10
        while True:
            listed = {p.pid: p for p in box_processes(own)}
            sleeps = [p for p in listed.values() if p.argv == ["sleep", marker]]
            if sleeps or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(sleeps) == 1
        assert sleeps[0].ppid == child.pid and listed[child.pid].argv[0] == "unshare"
    finally:
        child.kill()
        child.wait()


def test_a_cut_command_line_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from boxlite_agent import boxprocs

    child = subprocess.Popen(["sleep", "32" + "0" * 100])
    try:
        time.sleep(0.05)
        monkeypatch.setattr(boxprocs, "CMDLINE_MAX", 10)
        it = next(p for p in box_processes(os.stat("/proc/self/ns/pid").st_ino)
                  if p.pid == child.pid)
        assert it.argv_cut and it.argv == ["sleep", "3200"]  # (its first 10 bytes)
    finally:
        child.kill()
        child.wait()
