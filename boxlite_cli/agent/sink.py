"""Where a process's output goes on the host: two file descriptors (stdout, stderr)."""

from __future__ import annotations

from boxlite_cli.agent.client import STDERR, AgentClient
from boxlite_cli.fdio import write_all


class OutputSink:
    """Writes the output of the process `exec_id` to `out` and `err`.

    A stream whose reader went away (EPIPE: `| head` exited) gets no more, and the
    agent closes that pipe in the guest: the process's next write into it fails
    (EPIPE, SIGPIPE) as it would on a host, so `boxlite run IMAGE yes | head -2`
    ends. Only the writer is hit: `sh -c 'seq 1 100000; echo done'` loses `seq`, and
    `sh` goes on, as in a host pipeline."""

    def __init__(self, client: AgentClient, exec_id: str, out: int, err: int) -> None:
        self.client = client
        self.exec_id = exec_id
        self.out, self.err = out, err
        self.closed: set[int] = set()

    def write(self, stream: int, data: bytes) -> None:
        if stream in self.closed or write_all(self.err if stream == STDERR else self.out, data):
            return
        self.closed.add(stream)
        self.client.close_output(self.exec_id, stream)
