"""OutputSink: a process's output on the host's fds; a reader that went away closes
that stream in the guest (through the agent), and that stream only."""

from __future__ import annotations

import errno
import os
import time
from typing import Any, cast

from boxlite_cli.agent.client import STDERR, STDOUT, AgentClient
from boxlite_cli.agent.sink import OutputSink


class Recorder:
    def __init__(self) -> None:
        self.closed: list[tuple[str, int]] = []

    def close_output(self, exec_id: str, stream: int) -> None:
        self.closed.append((exec_id, stream))


def test_a_reader_that_went_away_closes_its_stream_once() -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    client = Recorder()
    sink = OutputSink(cast(AgentClient, cast(Any, client)), "e1", out_w, err_w)
    try:
        sink.write(STDOUT, b"one\n")
        assert os.read(out_r, 100) == b"one\n"
        os.close(out_r)  # `| head` exited
        sink.write(STDOUT, b"two\n")
        sink.write(STDOUT, b"three\n")  # no second close
        sink.write(STDERR, b"still here\n")
        assert client.closed == [("e1", STDOUT)]
        assert os.read(err_r, 100) == b"still here\n"
    finally:
        for fd in (out_w, err_r, err_w):
            os.close(fd)


def test_one_pipe_for_both_streams_closes_each_as_it_is_written() -> None:
    r, w = os.pipe()
    client = Recorder()
    sink = OutputSink(cast(AgentClient, cast(Any, client)), "main", w, w)  # 2>&1 | head
    os.close(r)
    try:
        sink.write(STDERR, b"x")
        sink.write(STDOUT, b"y")
        assert client.closed == [("main", STDERR), ("main", STDOUT)]
    finally:
        os.close(w)


def test_a_write_that_fails_otherwise_closes_the_stream_and_is_kept() -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    r, w = os.pipe()
    client = Recorder()
    sink = OutputSink(cast(AgentClient, cast(Any, client)), "e2", full, w)
    try:
        sink.write(STDOUT, b"into a full disk")
        sink.write(STDOUT, b"more")
        sink.write(STDERR, b"fine\n")
        assert client.closed == [("e2", STDOUT)]
        assert sink.error is not None and sink.error.errno == errno.ENOSPC
        assert os.read(r, 100) == b"fine\n"
    finally:
        for fd in (full, r, w):
            os.close(fd)


def test_a_reader_that_leaves_is_noticed_before_the_next_write() -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    client = Recorder()
    sink = OutputSink(cast(AgentClient, cast(Any, client)), "e3", out_w, err_w)
    try:
        with sink.watching():
            os.close(out_r)  # `head` exits while the process writes nothing
            deadline = time.monotonic() + 5
            while not client.closed and time.monotonic() < deadline:
                time.sleep(0.02)
            assert client.closed == [("e3", STDOUT)]
        sink.write(STDOUT, b"late")  # nothing more to close
        assert client.closed == [("e3", STDOUT)]
    finally:
        for fd in (out_w, err_r, err_w):
            os.close(fd)


def test_let_go_ends_the_readers_pipes_while_the_watcher_polls_them() -> None:
    """A killed CLI's pipes: their readers see their end at once, though the watcher
    was polling them (a poll holds the files open), and later output goes nowhere."""
    import select

    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    client = Recorder()
    sink = OutputSink(cast(AgentClient, cast(Any, client)), "e4", out_w, err_w)
    try:
        with sink.watching():
            time.sleep(0.2)  # (the watcher is in its poll)
            sink.let_go()
            for r in (out_r, err_r):
                assert select.select([r], [], [], 5)[0] == [r]
                assert os.read(r, 100) == b""  # the end, not a hang
            sink.write(STDOUT, b"into nothing")
        assert client.closed == []  # the process in the box writes on
    finally:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)


def test_let_go_outside_watching_leaves_the_fds_alone() -> None:
    """Out of `watching()` the caller may have closed them: their numbers are not ours."""
    r, w = os.pipe()
    sink = OutputSink(cast(AgentClient, cast(Any, Recorder())), "e5", w, w)
    try:
        with sink.watching():
            pass
        sink.let_go()
        os.write(w, b"still the pipe")
        assert os.read(r, 100) == b"still the pipe"
    finally:
        os.close(r)
        os.close(w)
