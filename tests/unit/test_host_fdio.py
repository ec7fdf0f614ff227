"""fdio: writing all of a chunk, and telling that a pipe's reader went away (what the
shim checks before it writes a direct-output run's output into a CLI's stdout)."""

from __future__ import annotations

import os
from pathlib import Path

from boxlite_cli.fdio import (
    SPARSE_BLOCK,
    FdReader,
    read_some,
    reader_gone,
    release_fds,
    write_all,
    write_sparse,
)


def test_write_all_writes_everything_even_to_a_non_blocking_pipe() -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    data = os.urandom(200_000)  # more than a pipe holds: the writer must wait
    got = bytearray()
    pid = os.fork()
    if pid == 0:  # the reader
        os.close(w)
        while chunk := os.read(r, 65536):
            got += chunk
        os._exit(0 if bytes(got) == data else 1)
    os.close(r)
    assert write_all(w, data)
    os.close(w)
    assert os.waitpid(pid, 0)[1] == 0


def test_a_gone_reader_is_seen_and_write_all_says_false() -> None:
    r, w = os.pipe()
    try:
        assert not reader_gone(w)
        os.close(r)
        assert reader_gone(w)
        assert write_all(w, b"x") is False  # EPIPE, not an exception (SIGPIPE is ignored)
    finally:
        os.close(w)


def test_write_sparse_leaves_runs_of_zeros_as_holes(tmp_path: Path) -> None:
    data = b"head" + bytes(32 * SPARSE_BLOCK) + b"tail" + bytes(3 * SPARSE_BLOCK)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_sparse(fd, data[:100])  # (pieces of any length, as a stream brings them)
        write_sparse(fd, data[100:])
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    assert path.read_bytes() == data
    assert path.stat().st_blocks * 512 <= 8 * SPARSE_BLOCK


def test_a_stalled_reader_can_be_given_up_on_without_touching_the_shared_fd(
        tmp_path: Path) -> None:
    """The shim's own non-blocking copy of the CLI's stdout pipe: a reader that stops
    reading holds it only until `give_up` (a stop); the fd it shares stays blocking."""
    import fcntl
    import threading

    from boxlite_cli.fdio import own_nonblocking

    r, w = os.pipe()
    own = own_nonblocking(w)
    try:
        assert own != w
        assert not fcntl.fcntl(w, fcntl.F_GETFL) & os.O_NONBLOCK
        give_up = threading.Event()
        assert write_all(own, b"x" * 1000, give_up)  # (room in the pipe: written)
        assert os.read(r, 2000) == b"x" * 1000
        give_up.set()
        assert not write_all(own, b"y" * (4 << 20), give_up)  # (full: given up)
    finally:
        for fd in {r, w, own}:
            os.close(fd)
    regular = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        assert own_nonblocking(regular) == regular  # (never blocks; shares its offset)
    finally:
        os.close(regular)


def test_a_non_blocking_input_is_waited_for_not_taken_as_ended() -> None:
    """A CI runner's stdin pipe left O_NONBLOCK: EAGAIN was taken for the end of the
    input, and the box's stdin closed early without a word."""
    import threading
    import time

    r, w = os.pipe()
    os.set_blocking(r, False)

    def feed() -> None:
        for chunk in (b"one ", b"two ", b"three"):
            time.sleep(0.1)
            os.write(w, chunk)
        os.close(w)

    threading.Thread(target=feed, daemon=True).start()
    got = b""
    while data := read_some(r, 4096):
        got += data
    assert got == b"one two three"
    os.close(r)
    r, w = os.pipe()
    os.set_blocking(r, False)
    threading.Thread(target=feed, daemon=True).start()
    import io

    assert io.BufferedReader(FdReader(r)).read() == b"one two three"
    os.close(r)


def test_released_fds_let_their_pipe_end_and_write_nowhere() -> None:
    """What the shim does with a gone CLI's stdout and stderr: the pipe's reader sees
    its end, and a write still coming goes to /dev/null, not to a file that took the
    number."""
    r, w = os.pipe()
    copy = os.dup(w)
    try:
        release_fds([w, copy, 10_000])  # (one not open: passed over)
        assert os.read(r, 10) == b""  # (no writer left: the end)
        assert os.write(w, b"nowhere") == 7
        assert os.readlink(f"/proc/self/fd/{copy}") == "/dev/null"
    finally:
        for fd in (r, w, copy):
            os.close(fd)
