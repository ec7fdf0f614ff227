"""The agent's reusable threads (threads.py): a task goes to an idle thread when there
is one, warmed threads exist before any task, and a failing task is reported without
losing its thread; the gRPC server's workers can be started ahead too."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.threads import ThreadCache, warm_pool


def run_one(cache: ThreadCache, name: str = "task") -> tuple[int, str]:
    seen: list[tuple[int, str]] = []
    task = cache.start(lambda: seen.append((threading.get_ident(), threading.current_thread().name)),
                       name=name)
    assert task.join(10)
    return seen[0]


def wait_idle(cache: ThreadCache, count: int) -> None:
    for _ in range(1000):
        if cache.idle == count:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{cache.idle} idle threads, not {count}")


def test_a_task_runs_under_its_name_and_its_thread_is_reused() -> None:
    cache = ThreadCache()
    first, name = run_one(cache, "exec-main-out")
    assert name == "exec-main-out"
    wait_idle(cache, 1)
    threads_before = threading.active_count()
    second, _ = run_one(cache)
    assert second == first, "the idle thread took the task"
    assert threading.active_count() == threads_before, "no thread was started"


def test_warmed_threads_take_tasks_without_new_threads_being_started() -> None:
    cache = ThreadCache()
    cache.warm(3)
    assert cache.idle == 3
    threads_before = threading.active_count()
    release = threading.Event()
    tasks = [cache.start(release.wait, 10, name=f"t{i}") for i in range(3)]
    assert cache.idle == 0
    assert threading.active_count() == threads_before
    release.set()
    assert all(task.join(10) for task in tasks)
    wait_idle(cache, 3)


def test_only_so_many_idle_threads_are_kept() -> None:
    cache = ThreadCache(keep_idle=1)
    release = threading.Event()
    tasks = [cache.start(release.wait, 10, name=f"t{i}") for i in range(3)]
    release.set()
    assert all(task.join(10) for task in tasks)
    wait_idle(cache, 1)
    cache.warm(5)
    assert cache.idle == 1, "warm is bounded by the kept number too"


def test_a_failing_task_is_reported_and_its_thread_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: reported.append(args.exc_value))
    cache = ThreadCache()

    def fail() -> None:
        raise ValueError("bad fd")

    assert cache.start(fail, name="reader").join(10)
    wait_idle(cache, 1)
    assert len(reported) == 1 and isinstance(reported[0], ValueError)
    assert run_one(cache)[1] == "task"


def test_warm_pool_starts_that_many_executor_workers() -> None:
    executor = ThreadPoolExecutor(max_workers=16)
    try:
        warm_pool(executor, 4)
        assert len(executor._threads) == 4
        for _ in range(1000):  # (each worker counts itself idle just after its task)
            if executor._idle_semaphore._value == 4:  # type: ignore[attr-defined]
                break
            threading.Event().wait(0.01)
        executor.submit(lambda: None).result(10)
        assert len(executor._threads) == 4, "an idle worker took the next task"
    finally:
        executor.shutdown()
