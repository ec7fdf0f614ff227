"""Daemon threads kept for reuse: the readers and watchers of processes.

After a restore from a warm-start template, every piece of guest code runs under an
emulator that translates it afresh, and starting a thread is a lot of it (clone, the
stack's mapping, the new thread's start-up): the three threads of a box's first
process cost ~60 ms. Threads that already exist in the template's memory are only
handed their task, and a thread whose task ended waits for the next one.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

KEEP_IDLE = 16  # idle threads kept; more are let go when their task ends


class Task:
    """One task given to a thread: ``join`` waits for its end."""

    def __init__(self, target: Callable[..., object], args: tuple[Any, ...], name: str) -> None:
        self._target = target
        self._args = args
        self.name = name
        self._done = threading.Event()

    def join(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def run(self) -> None:
        current = threading.current_thread()
        current.name = self.name
        try:
            self._target(*self._args)
        except Exception as e:  # reported as an uncaught exception of a thread would be
            threading.excepthook(threading.ExceptHookArgs((type(e), e, e.__traceback__, current)))
        finally:
            current.name = "idle"
            self._done.set()


class ThreadCache:
    """Runs tasks in daemon threads, reusing idle ones."""

    def __init__(self, keep_idle: int = KEEP_IDLE) -> None:
        self._keep_idle = keep_idle
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Task]] = []

    @property
    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def start(self, target: Callable[..., object], *args: Any, name: str) -> Task:
        """Run ``target(*args)`` in an idle thread, or in a new one if none is idle."""
        task = Task(target, args, name)
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = self._new_thread(name)
        inbox.put(task)
        return task

    def warm(self, count: int) -> None:
        """Make sure ``count`` threads (at most the kept number) are idle."""
        for _ in range(min(count, self._keep_idle) - self.idle):
            inbox = self._new_thread("idle")
            with self._lock:
                self._idle.append(inbox)

    def _new_thread(self, name: str) -> queue.SimpleQueue[Task]:
        inbox: queue.SimpleQueue[Task] = queue.SimpleQueue()
        threading.Thread(target=self._serve, args=(inbox,), name=name, daemon=True).start()
        return inbox

    def _serve(self, inbox: queue.SimpleQueue[Task]) -> None:
        while True:
            inbox.get().run()
            with self._lock:
                if len(self._idle) >= self._keep_idle:
                    return
                self._idle.append(inbox)


# The agent's own: process.py's readers and watchers; server.py warms it at start-up.
THREADS = ThreadCache()


def warm_pool(executor: ThreadPoolExecutor, count: int, timeout_s: float = 5.0) -> None:
    """Have ``count`` worker threads in ``executor``, which starts one only when none is
    idle: ``count`` tasks that wait for one another."""
    meeting = threading.Barrier(count + 1)

    def meet() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            meeting.wait(timeout_s)

    for _ in range(count):
        executor.submit(meet)
    meet()
