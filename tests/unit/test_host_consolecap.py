"""The console log's bound (shim/consolecap.py): cut to its tail past the limit, and a
writer that appends (as QEMU's append=on chardev) goes on after the cut."""

from __future__ import annotations

import os
from pathlib import Path

from boxlite_cli.shim.consolecap import ConsoleBound, trim_console


def test_a_console_log_under_the_limit_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_bytes(b"boot\n" * 10)
    assert not trim_console(log, max_bytes=100, keep_bytes=10)
    assert log.read_bytes() == b"boot\n" * 10


def test_past_the_limit_only_the_tail_is_kept_and_appends_go_after_it(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    vmm = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # as QEMU holds it
    try:
        os.write(vmm, b"x" * 1000 + b"boxlite-init: last words\n")
        assert trim_console(log, max_bytes=500, keep_bytes=25)
        os.write(vmm, b"more\n")
    finally:
        os.close(vmm)
    lines = log.read_bytes().splitlines()
    assert lines[0].startswith(b"[boxlite: the console log passed 500 bytes")
    assert lines[1:] == [b"boxlite-init: last words", b"more"]
    assert log.stat().st_size < 200


def test_the_bound_keeps_trimming_until_stopped(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_bytes(b"y" * (5 << 20))
    bound = ConsoleBound(log, interval_s=0.01).start()
    try:
        bound.thread.join(0.5)
        assert log.stat().st_size < 1 << 20
    finally:
        bound.stop()
        bound.thread.join(5)
    assert not bound.thread.is_alive()


def test_printed_text_cannot_drive_the_terminal() -> None:
    """Tables, error lines and warnings go through printable (cli/printable.py)."""
    from boxlite_cli.cli.printable import printable

    assert printable("\x1b[31mEVIL\x1b]0;pwned\x07\n\u202eé\t") == (
        "\\x1b[31mEVIL\\x1b]0;pwned\\x07\\x0a\\u202eé\\x09")


def test_an_unambiguous_name_cannot_read_as_another_names_escape() -> None:
    """diff prints names so: `a\\x0ab` (a backslash in it) is not `a<newline>b`."""
    from boxlite_cli.cli.printable import printable

    assert printable("a\\x0ab", unambiguous=True) == "a\\\\x0ab"
    assert printable("a\nb", unambiguous=True) == "a\\x0ab"
    assert printable("a\\x0ab") == "a\\x0ab"  # (error lines keep a backslash as it is)
