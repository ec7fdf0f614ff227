"""The shim's watch on its VM's run state: QEMU stops a VM whose disk write the host's
full disk refused (werror=enospc's "io-error") and continues it when asked (`unpause`),
no write lost. Nothing in the guest can say so, so the shim records it in the box's
state (ps, inspect, exec and top say it at once) and clears it once the VM runs again."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("boxlite.shim")
HELD_POLL_S = 2.0


class HeldWatch:
    """A thread that asks `query` every `interval` why the VM stands stopped (None: it
    does not), and gives `record` each change; stopped by `stop`."""

    def __init__(self, query: Callable[[], str | None], record: Callable[[str | None], object],
                 interval: float = HELD_POLL_S, held: str | None = None) -> None:
        self.query = query
        self.record = record
        self.interval = interval
        self.held = held  # (what the state says now: a change from it is recorded)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="held-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            now = self.query()
            if now != self.held and not self.stopped.is_set():
                log.warning("the VM %s", f"stands stopped: {now}" if now else "runs again")
                self.record(now)
                self.held = now
