"""The execs the agent knows: all running ones and a bounded tail of finished ones."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from boxlite_agent.errors import AlreadyExists, InvalidArgument, NotFound
from boxlite_agent.process import Execution

MAX_FINISHED = 1024
MAX_FINISHED_BYTES = 32 << 20  # undelivered output kept for finished execs
MAX_ID_LEN = 128


class ExecTable:
    def __init__(
        self, max_finished: int = MAX_FINISHED, max_finished_bytes: int = MAX_FINISHED_BYTES
    ) -> None:
        self._lock = threading.Lock()
        self._execs: dict[str, Execution] = {}
        self._reserved: set[str] = set()
        self._finished: OrderedDict[str, Execution] = OrderedDict()
        self._max_finished = max_finished
        self._max_finished_bytes = max_finished_bytes

    def reserve(self, exec_id: str) -> str:
        """Claim an id for a new exec ("" picks one); raises if a live exec has it."""
        if len(exec_id) > MAX_ID_LEN:
            raise InvalidArgument(f"exec_id longer than {MAX_ID_LEN} characters")
        with self._lock:
            if not exec_id:
                exec_id = os.urandom(6).hex()
                while exec_id in self._execs or exec_id in self._reserved:
                    exec_id = os.urandom(6).hex()
            existing = self._execs.get(exec_id)
            if exec_id in self._reserved or (existing is not None and not existing.done):
                raise AlreadyExists(f"exec {exec_id} already exists and is running")
            self._reserved.add(exec_id)
            return exec_id

    def release(self, exec_id: str) -> None:
        """Give up a reservation that did not become an exec."""
        with self._lock:
            self._reserved.discard(exec_id)

    def add(self, execution: Execution) -> None:
        """Register the exec for a reserved id (replacing a finished one of that id)."""
        with self._lock:
            self._reserved.discard(execution.id)
            old = self._execs.get(execution.id)
            if old is not None:
                self._finished.pop(execution.id, None)
                old.discard()
            self._execs[execution.id] = execution
        if execution.done:
            self.finished(execution)

    def get(self, exec_id: str) -> Execution:
        with self._lock:
            execution = self._execs.get(exec_id)
        if execution is None:
            raise NotFound(f"no such exec: {exec_id!r}")
        return execution

    def running(self) -> list[Execution]:
        with self._lock:
            return [e for e in self._execs.values() if not e.done]

    def finished(self, execution: Execution) -> None:
        """Called when an exec is done; evicts the oldest finished ones beyond the bounds."""
        evicted = []
        with self._lock:
            if self._execs.get(execution.id) is not execution:
                return
            self._finished[execution.id] = execution
            total = sum(e.output.buffered_bytes for e in self._finished.values())
            while self._finished and (
                len(self._finished) > self._max_finished or total > self._max_finished_bytes
            ):
                _, old = self._finished.popitem(last=False)
                total -= old.output.buffered_bytes
                del self._execs[old.id]
                evicted.append(old)
        for old in evicted:
            old.discard()
