"""Where a process's output goes on the host: two file descriptors (stdout, stderr)."""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Iterator

from boxlite_cli.agent.client import STDERR, STDOUT, AgentClient
from boxlite_cli.fdio import release_fds, write_all

_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL


class OutputSink:
    """Writes the output of the process `exec_id` to `out` and `err`.

    A stream whose reader went away (`| head` exited) gets no more, and the agent
    closes that pipe in the guest: the process's next write into it fails (EPIPE,
    SIGPIPE) as it would on a host, so `boxlite run IMAGE yes | head -2` ends. Only
    the writer is hit: `sh -c 'seq 1 100000; echo done'` loses `seq`, and `sh` goes
    on, as in a host pipeline. `watching()` notices a reader that leaves at once, not
    at the next write. A write that fails otherwise (a full disk) closes that stream
    the same way, and is kept in `error` for the caller to report."""

    def __init__(self, client: AgentClient, exec_id: str, out: int, err: int,
                 give_up: threading.Event | None = None) -> None:
        """`give_up`: once set, a write that cannot go on (a reader that stopped
        reading, on a non-blocking `out` or `err`) ends as if the reader were gone."""
        self.client = client
        self.exec_id = exec_id
        self.out, self.err = out, err
        self.give_up = give_up
        self.closed: set[int] = set()
        self.error: OSError | None = None
        self._lock = threading.Lock()
        self._stop_watch: int | None = None  # (the watcher's eventfd, while it runs)

    def write(self, stream: int, data: bytes) -> None:
        if stream in self.closed:
            return
        try:
            if write_all(self.err if stream == STDERR else self.out, data, self.give_up):
                return
        except OSError as e:  # ENOSPC, EIO...: as lost as a reader that went away
            self.error = self.error or e
        self.close(stream)

    def close(self, stream: int) -> None:
        """No more of `stream`: the process's next write into it fails."""
        with self._lock:
            if stream in self.closed:
                return
            self.closed.add(stream)
        self.client.close_output(self.exec_id, stream)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """While in the block, a thread waits for the reader of `out` or `err` to go
        away (a pipe's read end closed: POLLERR) and closes the streams written there.
        Leaving the block ends it at once (an eventfd wakes it)."""
        stop = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        thread = threading.Thread(target=self._watch, args=(stop,), name="sink-watch",
                                  daemon=True)
        self._stop_watch = stop
        thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._stop_watch = None
            os.eventfd_write(stop, 1)
            thread.join()
            os.close(stop)

    def let_go(self, *also: int) -> None:
        """The process reading the output is gone (a killed CLI): `out`, `err` and `also`
        become /dev/null, so the readers of what they were open on see their end (the
        process in the box writes on, into nothing), and the watcher stops (its poll
        holds those files open). Only while `watching()`: the caller closes the fds after
        it, and their numbers may be another file's by then."""
        with self._lock:
            if self._stop_watch is None:
                return
            release_fds((self.out, self.err, *also))
            os.eventfd_write(self._stop_watch, 1)

    def _watch(self, stop: int) -> None:
        streams = {self.out: [STDOUT], self.err: [STDERR]}
        if self.out == self.err:
            streams = {self.out: [STDOUT, STDERR]}
        poller = select.poll()
        poller.register(stop, select.POLLIN)
        for fd in streams:
            poller.register(fd, 0)  # (POLLERR and POLLHUP are always reported)
        while streams:
            for fd, events in poller.poll():
                if fd == stop:
                    return
                if events & _GONE:
                    poller.unregister(fd)
                    for stream in streams.pop(fd, []):
                        self.close(stream)
