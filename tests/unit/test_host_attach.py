"""attach: the detach keys in typed input."""

from __future__ import annotations


def test_the_detach_keys_are_found_across_reads() -> None:
    from boxlite_cli.runtime.attach import DetachScanner

    scanner = DetachScanner()
    assert scanner.feed(b"ls\r") == (b"ls\r", False)
    assert scanner.feed(b"abc\x10") == (b"abc", False)  # (held: it may begin the keys)
    assert scanner.feed(b"x") == (b"\x10x", False)  # (it did not)
    assert scanner.feed(b"\x10") == (b"", False)
    assert scanner.feed(b"\x11rest") == (b"", True)
    assert DetachScanner().feed(b"a\x10\x11b") == (b"a", True)
