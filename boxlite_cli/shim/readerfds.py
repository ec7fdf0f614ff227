"""The stdout and stderr of a foreground CLI, written to by the shim directly."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable

from boxlite_cli.agent.client import STDERR, AgentClient
from boxlite_cli.errors import BoxliteError
from boxlite_cli.fdio import write_all


class ReaderFds:
    """A process's output goes to `out` and `err` (the CLI's own stdout and stderr).

    A reader that went away (EPIPE) gets no more, and the first time the process is
    sent SIGPIPE (`on_broken`): what a writer into a closed pipe gets on a host, so
    that `boxlite run IMAGE yes | head -2` ends as `yes | head -2` does."""

    def __init__(self, out: int, err: int, on_broken: Callable[[], None]) -> None:
        self.out, self.err = out, err
        self.open = {out, err}
        self.on_broken = on_broken
        self.broken = False

    def write(self, stream: int, data: bytes) -> None:
        fd = self.err if stream == STDERR else self.out
        if fd not in self.open or write_all(fd, data):
            return
        self.open.discard(fd)
        if not self.broken:
            self.broken = True
            self.on_broken()


def sigpipe_to(client: AgentClient, exec_id: str) -> Callable[[], None]:
    """An `on_broken` that sends the process `exec_id` SIGPIPE (best effort)."""
    def send() -> None:
        with contextlib.suppress(BoxliteError):
            client.signal(exec_id, signal.SIGPIPE)
    return send
