"""ReaderFds: a foreground CLI's stdout and stderr, and SIGPIPE for a reader gone."""

from __future__ import annotations

import os

from boxlite_cli.agent.client import STDERR, STDOUT
from boxlite_cli.shim.readerfds import ReaderFds


def test_a_reader_gone_stops_its_stream_and_signals_the_process_once() -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    broken: list[bool] = []
    try:
        reader = ReaderFds(out_w, err_w, on_broken=lambda: broken.append(True))
        reader.write(STDOUT, b"one\n")
        assert os.read(out_r, 100) == b"one\n"
        os.close(out_r)  # `| head -1` has what it wanted
        out_r = -1
        reader.write(STDOUT, b"two\n")
        reader.write(STDOUT, b"three\n")
        assert broken == [True]  # SIGPIPE once, as a host process gets it at its first write
        reader.write(STDERR, b"still here\n")  # stderr is another reader
        assert os.read(err_r, 100) == b"still here\n"
        os.close(err_r)
        err_r = -1
        reader.write(STDERR, b"gone too\n")
        assert broken == [True]
    finally:
        for fd in (out_r, out_w, err_r, err_w):
            if fd >= 0:
                os.close(fd)
