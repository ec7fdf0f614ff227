"""The guest agent's memory guard (boxlite_agent/oomguard.py): when the box's group
thrashes at its limit, the process the kernel would pick is killed and counted; a
stall without the limit, or a limit without the stall, leaves the box alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent import cgroups, console, oomguard
from boxlite_agent.oomguard import MemoryGuard, Sample, read_sample, thrashing, victim

console.use_stderr()


def write_group(group: Path, stalled_us: int, at_limit: int, pids: list[int]) -> None:
    group.mkdir(exist_ok=True)
    (group / "memory.pressure").write_text(
        f"some avg10=90.00 avg60=40.00 avg300=9.00 total={stalled_us}\n"
        f"full avg10=80.00 avg60=30.00 avg300=8.00 total={stalled_us // 2}\n")
    (group / "memory.events").write_text(
        f"low 0\nhigh 0\nmax {at_limit}\noom 0\noom_kill 0\noom_group_kill 0\n")
    (group / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))


def write_proc(proc: Path, pid: int, name: str, score: int, rss: int, adj: int = 0,
               nspid: str = "") -> None:
    base = proc / str(pid)
    base.mkdir(parents=True)
    (base / "oom_score_adj").write_text(f"{adj}\n")
    (base / "oom_score").write_text(f"{score}\n")
    (base / "statm").write_text(f"9000 {rss} 100 1 0 500 0\n")
    (base / "status").write_text(f"Name:\t{name}\nState:\tR (running)\n"
                                 f"NSpid:\t{pid}{nspid}\n")


def test_a_sample_reads_the_stall_total_and_the_limit_count(tmp_path: Path) -> None:
    write_group(tmp_path, stalled_us=1_234_567, at_limit=42, pids=[])
    assert read_sample(str(tmp_path)) == Sample(stalled_us=1_234_567, at_limit=42)
    (tmp_path / "memory.pressure").write_text("garbage\n")
    assert read_sample(str(tmp_path)) is None


@pytest.mark.parametrize(("stalled_us", "limit_hits", "verdict"), [
    (860_000, 1500, True),  # 43 % of 2 s stalled, at the limit: a hog, as measured
    (600_000, 1, True),  # the fraction exactly
    (300_000, 1200, False),  # at the limit often, but mostly running: a streamed file
    (2_000_000, 0, False),  # stalled all along, but not at the limit (the disk, the host)
])
def test_thrashing_is_a_stall_at_the_limit(stalled_us: int, limit_hits: int,
                                           verdict: bool) -> None:
    before = Sample(stalled_us=5_000_000, at_limit=10)
    after = Sample(stalled_us=5_000_000 + stalled_us, at_limit=10 + limit_hits)
    assert thrashing(before, after, 2.0) is verdict


def test_the_victim_is_the_kernels_pick_never_init_nor_the_unkillable(tmp_path: Path) -> None:
    group, proc = tmp_path / "box", tmp_path / "proc"
    write_group(group, 0, 0, [101, 102, 103, 104, 105, 999])  # (999 is gone)
    write_proc(proc, 101, "boxlite-init", score=1900, rss=90_000, nspid="\t1")
    write_proc(proc, 102, "sh", score=3, rss=200)
    write_proc(proc, 103, "python3", score=700, rss=60_000)
    write_proc(proc, 104, "agentd", score=1999, rss=95_000, adj=-1000)
    write_proc(proc, 105, "python3", score=700, rss=70_000)  # same score, larger
    assert victim(str(group), str(proc)) == (105, "python3")
    write_group(group, 0, 0, [101, 104])
    assert victim(str(group), str(proc)) is None


def test_a_thrashing_group_loses_its_largest_process_and_counts_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hog = subprocess.Popen(["sleep", "600"])
    try:
        group, proc = tmp_path / "box", tmp_path / "proc"
        write_group(group, 10_000_000, 5, [hog.pid])
        write_proc(proc, hog.pid, "python3", score=800, rss=50_000)

        windows = []

        def meanwhile(seconds: float) -> None:  # stalled 40 % of each window, at the limit
            assert seconds == oomguard.STALL_WINDOW_S
            windows.append(seconds)
            write_group(group, 10_000_000 + int(len(windows) * seconds * 400_000),
                        5 + 4 * len(windows), [hog.pid])

        guard = MemoryGuard(str(group), str(proc), sleep=meanwhile)
        assert guard.check() is True
        assert len(windows) == oomguard.WINDOWS == 2  # (a burst is not a thrash)
        assert hog.wait(timeout=10) == -9
        assert guard.kills == 1
        assert ("out of memory (stalled at its limit for 6 s): killed process "
                f"{hog.pid} (python3)") in capsys.readouterr().err
    finally:
        hog.kill()
        hog.wait()


def test_one_window_of_thrash_kills_nothing(tmp_path: Path) -> None:
    group, proc = tmp_path / "box", tmp_path / "proc"
    write_group(group, 10_000_000, 5, [])
    windows = []

    def burst(seconds: float) -> None:  # stalled all the first window at the limit, then not
        windows.append(seconds)
        if len(windows) == 1:
            write_group(group, 10_000_000 + int(seconds * 1e6), 9, [])

    guard = MemoryGuard(str(group), str(proc), sleep=burst)
    assert guard.check() is False and len(windows) == 2 and guard.kills == 0


def test_a_stall_below_the_limit_kills_nothing(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        group, proc = tmp_path / "box", tmp_path / "proc"
        write_group(group, 10_000_000, 5, [sleeper.pid])
        write_proc(proc, sleeper.pid, "dd", score=800, rss=50_000)
        guard = MemoryGuard(str(group), str(proc),  # (stalled all the window, limit unmet)
                            sleep=lambda s: write_group(group, 10_000_000 + int(s * 1e6), 5,
                                                        [sleeper.pid]))
        assert guard.check() is False
        assert sleeper.poll() is None and guard.kills == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_box_counts_the_guards_kills_with_the_kernels(tmp_path: Path) -> None:
    box = cgroups.BoxCgroup(str(tmp_path))
    box.group = str(tmp_path / "box")
    write_group(tmp_path / "box", 0, 0, [])
    (tmp_path / "box" / "memory.events").write_text("max 3\noom 2\noom_kill 2\n")
    assert box.oom_kills() == 2
    box.guard = MemoryGuard(box.group)
    box.guard.kills = 1
    assert box.oom_kills() == 3


def test_without_psi_the_guard_says_so_and_stays_off(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    guard = MemoryGuard(str(tmp_path / "no-such-group"), sleep=lambda _: None)
    guard.start()
    assert "no memory guard for the box: " in capsys.readouterr().err
    assert guard.check() is False and guard.kills == 0


def test_the_boxs_memory_is_its_groups_less_inactive_file_cache(tmp_path: Path) -> None:
    """What stats shows (docker's): memory.current less inactive_file, against memory.max;
    0 for what is not known."""
    box = cgroups.BoxCgroup(str(tmp_path))
    assert box.memory() == (0, 0)  # (no group)
    group = tmp_path / "box"
    group.mkdir()
    box.group = str(group)
    (group / "memory.current").write_text("50000000\n")
    (group / "memory.stat").write_text("anon 30000000\nfile 20000000\nactive_file 5000000\n"
                                       "inactive_file 15000000\n")
    (group / "memory.max").write_text("382214144\n")
    assert box.memory() == (35_000_000, 382_214_144)
    (group / "memory.max").write_text("max\n")  # (no limit set)
    assert box.memory() == (35_000_000, 0)
    (group / "memory.current").unlink()  # (no memory controller)
    assert box.memory() == (0, 0)
