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
    does not), and gives `record` what differs from what `recorded` says the box's
    state has (an `unpause` clears it there, and the VM may stop again at once);
    stopped by `stop`."""

    def __init__(self, query: Callable[[], str | None], record: Callable[[str | None], object],
                 recorded: Callable[[], str | None], interval: float = HELD_POLL_S) -> None:
        self.query = query
        self.record = record
        self.recorded = recorded
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name="held-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            now = self.query()
            if now != self.recorded() and not self.stopped.is_set():
                log.warning("the VM %s", f"stands stopped: {now}" if now else "runs again")
                self.record(now)
