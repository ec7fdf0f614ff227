"""boxlite_cli.state.flock: our flock(2)-based FileLock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from boxlite_cli.state import flock
from boxlite_cli.state.flock import FileLock, Timeout

# Holds the lock on argv[1] until a line arrives on stdin, then releases it and exits.
_HOLDER = """
import sys
from boxlite_cli.state.flock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "test.lock"


class FakeTime:
    """The flock module's `time` in a test: its sleeps pass at once, on its own clock."""

    START = 100.0

    def __init__(self) -> None:
        self.now = self.START
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds
        assert self.now < self.START + 3600 and len(self.sleeps) < 10_000, "still retrying"


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(flock, "time", fake)
    return fake


@pytest.fixture
def holder(lock_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process that holds the lock on `lock_path`."""
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock_path)], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "locked"
        yield child
    finally:
        child.kill()
        child.wait()


def _release(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "released"
    assert child.wait(timeout=10) == 0


def test_another_process_excludes_us_until_it_releases(lock_path: Path,
                                                       holder: subprocess.Popen[str],
                                                       fake_time: FakeTime) -> None:
    lock = FileLock(lock_path)
    with pytest.raises(Timeout) as info:
        lock.acquire(timeout=0.2)
    # It tried again and again (backing off) for the whole timeout, then gave up.
    assert len(fake_time.sleeps) > 1
    assert fake_time.now - fake_time.START == pytest.approx(0.2)
    assert str(lock_path) in str(info.value)
    assert "within 0.2 s" in str(info.value)
    assert info.value.lock_file == str(lock_path)
    assert isinstance(info.value, TimeoutError)
    assert not lock.is_locked
    _release(holder)
    lock.acquire(timeout=0.2)
    assert lock.is_locked
    lock.release()
    assert not lock.is_locked


def test_a_waiter_gets_the_lock_once_the_holder_releases(lock_path: Path,
                                                         holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    with FileLock(lock_path, timeout=10) as lock:
        assert lock.is_locked


def test_timeout_zero_tries_once(lock_path: Path, holder: subprocess.Popen[str],
                                 fake_time: FakeTime) -> None:
    with pytest.raises(Timeout, match="within 0 s"):
        FileLock(lock_path, timeout=0).acquire()
    assert fake_time.sleeps == []  # (no second try)
    with pytest.raises(Timeout):
        FileLock(lock_path).acquire(timeout=0)
    assert fake_time.sleeps == []


def test_reentrant_on_one_instance(lock_path: Path) -> None:
    lock = FileLock(lock_path, timeout=0)
    with lock:
        with lock:
            lock.acquire()
            assert lock.is_locked
            lock.release()
        assert lock.is_locked
        # Another instance (another open file description) is excluded, even in this process.
        with pytest.raises(Timeout):
            FileLock(lock_path, timeout=0).acquire()
    assert not lock.is_locked
    with FileLock(lock_path, timeout=0) as other:
        assert other.is_locked


def test_releasing_an_unheld_lock_does_nothing(lock_path: Path) -> None:
    lock = FileLock(lock_path)
    lock.release()
    assert not lock.is_locked
    lock.acquire()
    lock.release()
    lock.release()
    assert not lock.is_locked
    with FileLock(lock_path, timeout=0):
        pass


def test_the_context_manager_releases_on_an_exception(lock_path: Path) -> None:
    lock = FileLock(lock_path, timeout=0)
    with pytest.raises(RuntimeError, match="boom"), lock:
        assert lock.is_locked
        raise RuntimeError("boom")
    assert not lock.is_locked
    with FileLock(lock_path, timeout=0):
        pass


def test_the_lock_file_is_created_0644_and_kept(lock_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with FileLock(str(lock_path)):
            assert lock_path.is_file()
    finally:
        os.umask(old)
    assert stat.S_IMODE(lock_path.stat().st_mode) == 0o644
    assert lock_path.is_file()


def test_an_existing_lock_file_is_not_truncated(lock_path: Path) -> None:
    lock_path.write_text("keep")
    with FileLock(lock_path):
        pass
    assert lock_path.read_text() == "keep"


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "deeper" / "test.lock"
    with FileLock(path, timeout=0) as lock:
        assert lock.is_locked
    assert path.is_file()


def test_an_unusable_lock_path_is_an_oserror_not_a_hang(tmp_path: Path,
                                                        fake_time: FakeTime) -> None:
    (tmp_path / "file").write_text("")
    lock = FileLock(tmp_path / "file" / "test.lock", timeout=-1)
    with pytest.raises(OSError):  # (a retry loop would end in the fake clock's AssertionError)
        lock.acquire()
    assert fake_time.sleeps == []
    assert not lock.is_locked
