"""Typed input: the detach keys of attach, and what was typed ahead kept by raw mode."""

from __future__ import annotations


def test_the_detach_keys_are_found_across_reads() -> None:
    from boxlite_cli.runtime.detachkeys import DetachScanner

    scanner = DetachScanner()
    assert scanner.feed(b"ls\r") == (b"ls\r", False)
    assert scanner.feed(b"abc\x10") == (b"abc", False)  # (held: it may begin the keys)
    assert scanner.feed(b"x") == (b"\x10x", False)  # (it did not)
    assert scanner.feed(b"\x10") == (b"", False)
    assert scanner.feed(b"\x11rest") == (b"", True)
    assert DetachScanner().feed(b"a\x10\x11b") == (b"a", True)


def test_detach_keys_as_docker_writes_them() -> None:
    import pytest

    from boxlite_cli.errors import UsageError
    from boxlite_cli.runtime.detachkeys import DetachScanner, parse_detach_keys

    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,d") == b"\x01d"
    assert parse_detach_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-_,CTRL-X") == b"\x00\x1b\x1c\x1f\x18"
    assert parse_detach_keys("") == b"\x10\x11"  # (docker's: the default keys)
    for bad in ("ctrl-", "ctrl-1", "ab", " ", "ctrl-p,,q", "é", ","):
        with pytest.raises(UsageError, match="invalid detach key"):
            parse_detach_keys(bad)
    assert DetachScanner(b"\x01d").feed(b"ls\x01") == (b"ls", False)


def test_raw_mode_keeps_what_was_typed_ahead() -> None:
    """Bytes already waiting on the terminal when a tty session starts are read, not
    flushed away (tty.setraw's default TCSAFLUSH dropped them)."""
    import os
    import select

    from boxlite_cli.runtime.terminal import raw_terminal

    master, slave = os.openpty()
    try:
        os.write(master, b"echo typed-ahead\r")
        select.select([slave], [], [], 2)
        with raw_terminal(slave):
            assert select.select([slave], [], [], 2)[0]
            assert os.read(slave, 100).startswith(b"echo typed-ahead")
    finally:
        os.close(master)
        os.close(slave)
