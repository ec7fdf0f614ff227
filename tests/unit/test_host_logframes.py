"""The framed container log: what the shim appends is what `logs` reads back; bounded by
rotation into LOG.1, read back in order, and followed across a rotation."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.runtime import log_max_bytes
from boxlite_cli.shim.logframes import (
    HEADER,
    MIN_LOG_MAX_BYTES,
    TIME_FRAME_SIZE,
    LastLines,
    LogRecord,
    LogWriter,
    TimeWindow,
    read_frames,
    read_log,
    rotated,
    write_frame,
)

RECORDS = [(1, b"hello\n"), (2, b"oops\n"), (1, b""), (1, bytes(range(256)) * 300), (2, b"\x00")]


def encode(records: list[tuple[int, bytes]]) -> bytes:
    buf = io.BytesIO()
    for stream, data in records:
        write_frame(buf, stream, data)
    return buf.getvalue()


def test_round_trip() -> None:
    assert list(read_frames(io.BytesIO(encode(RECORDS)))) == RECORDS


def test_empty_log() -> None:
    assert list(read_frames(io.BytesIO(b""))) == []


def test_appends_across_writers_on_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    for record in RECORDS:
        with open(path, "ab") as f:
            write_frame(f, *record)
    with open(path, "rb") as f:
        assert list(read_frames(f)) == RECORDS


def test_frame_layout_is_stream_byte_then_big_endian_length() -> None:
    assert encode([(2, b"abc")]) == b"\x02\x00\x00\x00\x03abc"
    assert HEADER.size == 5


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 6, 10])
def test_torn_last_frame_is_ignored(cut: int) -> None:
    whole = encode(RECORDS[:2]) + encode([(1, b"0123456789")])
    torn = whole[: len(whole) - cut]
    assert list(read_frames(io.BytesIO(torn))) == RECORDS[:2]


def test_every_truncation_yields_a_prefix_of_the_records() -> None:
    records = [*RECORDS[:3], (1, b"tail")]
    whole = encode(records)
    for n in range(len(whole) + 1):
        got = list(read_frames(io.BytesIO(whole[:n])))
        assert got == records[: len(got)]


def test_huge_length_in_a_torn_header_does_not_allocate_or_hang(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    path.write_bytes(encode(RECORDS[:1]) + b"\x01\xff\xff\xff\xff" + os.urandom(16))
    with open(path, "rb") as f:
        assert list(read_frames(f)) == RECORDS[:1]


FRAME = TIME_FRAME_SIZE + HEADER.size + 1000  # one record of 1000 bytes, with its time


def plain(got: Iterable[LogRecord]) -> list[tuple[int, bytes]]:
    return [(r.stream, r.data) for r in got]


def records(n: int, start: int = 0) -> list[tuple[int, bytes]]:
    return [(i % 2, str(i).encode().rjust(999, b".") + b"\n") for i in range(start, start + n)]


def test_the_log_rotates_into_one_older_file(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    writer = LogWriter(log, max_bytes=3 * FRAME)
    for stream, data in records(10):
        writer.write(stream, data)
    writer.close()
    # 10 records, 3 per file: the last file has 1, the rotated one 3; the rest is gone
    assert log.stat().st_size == FRAME and rotated(log).stat().st_size == 3 * FRAME
    assert plain(read_log(log)) == records(4, start=6)
    assert plain(read_log(log, tail=2)) == records(2, start=8)
    assert plain(read_log(log, tail=0)) == []


def test_a_rotation_waits_for_a_line_to_end_up_to_twice_the_limit(tmp_path: Path) -> None:
    """The oldest file kept never begins with the end of a line whose start was
    rotated away (`logs` began mid-line): a rotation waits for a record that begins a
    line on every stream; one that never ends a line is cut at twice the limit."""
    log = tmp_path / "container.log"
    writer = LogWriter(log, max_bytes=3 * FRAME, files=1)
    piece = b"x" * 999
    for stream, data in [(1, piece), (1, piece), (1, piece), (2, b"y" * 998 + b"\n"),
                         (1, piece + b"\n"), (1, b"new".rjust(999, b".") + b"\n")]:
        writer.write(stream, data)
    writer.close()
    # over the limit at the 4th: stream 1 was mid-line; at the 6th all streams ended theirs
    assert plain(read_log(log)) == [(1, b"new".rjust(999, b".") + b"\n")]
    endless = tmp_path / "endless.log"
    writer = LogWriter(endless, max_bytes=3 * FRAME, files=1)
    for _ in range(7):
        writer.write(1, piece)  # (a progress bar: no line ever ends)
    writer.close()
    assert [len(r.data) for r in read_log(endless)] == [999]  # (cut at 6: the 7th is alone)


def test_chunks_larger_than_the_limit_rotate_at_a_line_end(tmp_path: Path) -> None:
    """The shim's chunks (up to 64 KiB) cut lines anywhere, and one is past a small
    limit by itself: the record that ends a line is cut there, so every file kept
    begins a line and the lines of the files kept run on whole (logs began mid-line,
    and a follower glued a line's start to another's end)."""
    log = tmp_path / "container.log"
    writer = LogWriter(log, max_bytes=4096, files=2)
    text = b"".join(b"%d\n" % n for n in range(1, 60_001))
    for i in range(0, len(text), 65_536):
        writer.write(1, text[i:i + 65_536])
    writer.close()
    for path in (rotated(log), log):  # (each file on its own begins a line)
        pieces = [r.data for r in read_log(path) if r.data]
        head = pieces[0].split(b"\n")[0]
        assert b"\n" + head + b"\n" in b"\n" + text, (path, head)
        assert int(head) == int(pieces[0].split(b"\n")[1]) - 1
    kept = b"".join(r.data for r in read_log(log)).split(b"\n")[:-1]
    numbers = [int(n) for n in kept]
    assert numbers == list(range(numbers[0], 60_001))  # (whole lines, none glued)


@pytest.mark.parametrize("files", [1, 3, 5])
def test_the_log_keeps_as_many_files_as_it_is_told(tmp_path: Path, files: int) -> None:
    """--log-opt max-file: the current file and files - 1 rotated ones, oldest first."""
    log = tmp_path / "container.log"
    for n in range(1, 10):  # (from a larger count before: dropped)
        rotated(log, n).write_bytes(b"")
    writer = LogWriter(log, max_bytes=2 * FRAME, files=files)
    for stream, data in records(11):
        writer.write(stream, data)
    writer.close()
    # 11 records, 2 a file: 6 files made, the last with one record
    kept = 1 + 2 * (files - 1)
    assert plain(read_log(log)) == records(kept, start=11 - kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["container.log", *[f"container.log.{n}" for n in range(1, files)]])


def test_a_log_of_no_files_keeps_nothing(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    writer = LogWriter(log, max_bytes=2 * FRAME, files=0)  # (--log-driver none)
    writer.write(0, b"gone")
    writer.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("files", "expected"), [
    (4, records(7)),  # (every file between is kept: all of it, in order)
    (2, [*records(2), *records(3, start=4)])])  # (its file is gone: what is left)
def test_a_follower_behind_many_rotations_reads_what_is_kept(
        tmp_path: Path, files: int, expected: list[tuple[int, bytes]]) -> None:
    log = tmp_path / "container.log"
    writer = LogWriter(log, max_bytes=2 * FRAME, files=files)
    writer.write(0, records(1)[0][1])
    going = [True]
    follower = read_log(log, follow=True, live=lambda: going[0])
    got = [next(follower)]  # (it holds the first file open)
    for stream, data in records(6, start=1):  # three more rotations
        writer.write(stream, data)
    writer.close()
    going[0] = False
    got.extend(follower)
    assert plain(got) == expected


def test_a_record_larger_than_the_limit_is_kept_whole(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    writer = LogWriter(log, max_bytes=100)
    writer.write(0, b"x" * 500)
    writer.write(1, b"y" * 500)
    writer.close()
    assert plain(read_log(log)) == [(0, b"x" * 500), (1, b"y" * 500)]


def test_a_writer_appends_to_what_an_earlier_shim_wrote(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    first = LogWriter(log, max_bytes=2 * FRAME)
    first.write(0, records(1)[0][1])
    first.close()
    second = LogWriter(log, max_bytes=2 * FRAME)  # a restarted box's shim
    for stream, data in records(2, start=1):
        second.write(stream, data)
    second.close()
    assert rotated(log).exists()  # the first file was full after two
    assert plain(read_log(log)) == records(3)


def test_a_follower_goes_on_across_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    writer = LogWriter(log, max_bytes=2 * FRAME)
    writer.write(0, records(1)[0][1])
    live = threading.Event()
    live.set()
    got: list[LogRecord] = []

    def follow() -> None:
        got.extend(read_log(log, follow=True, live=live.is_set))

    follower = threading.Thread(target=follow)
    follower.start()
    for stream, data in records(6, start=1):  # two rotations while it follows
        writer.write(stream, data)
        time.sleep(0.3)
    writer.close()
    live.clear()
    follower.join(10)
    assert not follower.is_alive()
    assert plain(got) == records(7)


def test_a_follower_behind_two_rotations_reads_the_file_between(tmp_path: Path) -> None:
    """Output fast enough to rotate the log twice between two looks of a follower:
    the file it read, then the one rotated since (now LOG.1), then the new one."""
    log = tmp_path / "container.log"
    writer = LogWriter(log, max_bytes=2 * FRAME)
    writer.write(0, records(1)[0][1])
    going = [True]
    follower = read_log(log, follow=True, live=lambda: going[0])
    got = [next(follower)]  # (it holds the first file open)
    for stream, data in records(4, start=1):  # r1 fills it; r2, r3 the next; r4 a third
        writer.write(stream, data)
    writer.close()
    going[0] = False
    got.extend(follower)
    assert plain(got) == records(5)


@pytest.mark.parametrize(("value", "expected"), [
    (None, 50 << 20), ("1048576", 1 << 20), ("10m", 10 << 20), ("1g", 1 << 30),
    ("12", MIN_LOG_MAX_BYTES)])
def test_the_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                              value: str | None, expected: int) -> None:
    if value is None:
        monkeypatch.delenv("BOXLITE_LOG_MAX_SIZE", raising=False)
    else:
        monkeypatch.setenv("BOXLITE_LOG_MAX_SIZE", value)
    assert log_max_bytes() == expected


def test_a_limit_that_is_no_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_LOG_MAX_SIZE", "lots")
    with pytest.raises(UsageError, match="invalid BOXLITE_LOG_MAX_SIZE 'lots'"):
        log_max_bytes()


def test_tail_counts_lines_not_records() -> None:
    last = LastLines(3)
    for stream, data in [(1, b"one\ntwo\nthr"), (1, b"ee\nfour\nfi"), (2, b"err\n"),
                         (1, b"ve")]:
        last.add(LogRecord(stream, data))
    # "three" was cut between two records; "fi" was cut by the other stream
    assert plain(last.result()) == [(1, b"fi"), (2, b"err\n"), (1, b"ve")]
    last = LastLines(2)
    for stream, data in [(1, b"a\n" * 1000), (1, b"tail without end")]:
        last.add(LogRecord(stream, data))
    assert plain(last.result()) == [(1, b"a\n"), (1, b"tail without end")]
    assert LastLines(0).result() == []


def test_tail_of_a_line_of_many_records_is_it_whole_with_its_first_time() -> None:
    """(a progress bar's `\r` line, minified JSON: one line of thousands of records;
    it was copied whole at each record, minutes for a long log's --tail 1)"""
    last = LastLines(2)
    last.add(LogRecord(0, b"before\n", 1))
    for i in range(5000):
        last.add(LogRecord(0, b"%04d" % i, 10 + i))
    last.add(LogRecord(0, b"end\n", 99999))
    [before, line] = last.result()
    assert before == LogRecord(0, b"before\n", 1)
    assert line.ns == 10 and line.data == b"".join(b"%04d" % i for i in range(5000)) + b"end\n"


def test_logs_tail_takes_lines_across_records_and_files(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    writer = LogWriter(log, max_bytes=64)
    for chunk in (b"l1\nl2\n", b"l3\nl", b"4\nl5\n" + b"x" * 70, b"\nl7\n"):
        writer.write(0, chunk)
    writer.close()
    assert rotated(log).exists()
    assert plain(read_log(log, tail=3)) == [(0, b"l5\n"), (0, b"x" * 70 + b"\n"), (0, b"l7\n")]


def test_records_carry_the_time_they_were_received(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    writer = LogWriter(log, max_bytes=1 << 20)
    for i, ns in enumerate((1_000, 2_000, 3_000)):
        writer.write(0, b"line %d\n" % i, ns=ns)
    writer.close()
    assert [r.ns for r in read_log(log)] == [1_000, 2_000, 3_000]
    assert plain(read_log(log, window=TimeWindow(since=2_000))) == [(0, b"line 1\n"),
                                                                   (0, b"line 2\n")]
    assert plain(read_log(log, window=TimeWindow(until=2_000))) == [(0, b"line 0\n"),
                                                                   (0, b"line 1\n")]
    assert plain(read_log(log, tail=1, window=TimeWindow(until=2_000))) == [(0, b"line 1\n")]


def test_a_log_without_times_reads_as_time_zero(tmp_path: Path) -> None:
    """What a shim of an older boxlite wrote: data frames only."""
    log = tmp_path / "container.log"
    log.write_bytes(encode([(0, b"old\n")]))
    assert list(read_log(log)) == [LogRecord(0, b"old\n", 0)]
    assert list(read_log(log, window=TimeWindow(since=1))) == []


def test_a_tailed_line_keeps_the_time_of_its_first_piece() -> None:
    last = LastLines(2)
    for data, ns in ((b"a\nhal", 10), (b"f\nb\n", 20)):
        last.add(LogRecord(0, data, ns))
    assert last.result() == [LogRecord(0, b"half\n", 10), LogRecord(0, b"b\n", 20)]


def test_the_records_kept_for_a_tail_give_the_lines_all_of_them_give() -> None:
    """last_records drops what cannot hold the last N lines (by newline count) before
    LastLines splits lines: the result is the same, streams interleaved or not."""
    import random

    from boxlite_cli.shim.logframes import last_records

    rng = random.Random(7)
    for _ in range(200):
        records = [LogRecord(rng.choice((0, 0, 1)),
                             bytes(rng.choice(b"ab\n") for _ in range(rng.randrange(0, 9))),
                             ns)
                   for ns in range(rng.randrange(0, 30))]
        for tail in (0, 1, 2, 5, 40):
            whole, kept = LastLines(tail), LastLines(tail)
            for record in records:
                whole.add(record)
            for record in last_records(records, tail):
                kept.add(record)
            assert kept.result() == whole.result(), (records, tail)


def test_a_rotation_while_a_reader_opens_the_log_loses_and_doubles_nothing(tmp_path: Path) -> None:
    """The reader opened the current file, then it was rotated to .1 before the reader
    opened .1: that file is read once (it was read twice); a log rotated away between
    its making and its opening is made again (the reader failed)."""
    from boxlite_cli.shim.logframes import Timed, _open_log, _written

    path = tmp_path / "container.log"
    writer = LogWriter(path, 4096)
    writer.write(0, b"first\n")
    current = _open_log(path)
    writer.write(0, b"x" * 5000)  # (past the limit: rotated)
    try:
        assert [r.data for r in _written(path, current, Timed())] == [b"first\n"]
    finally:
        current.close()
        writer.close()
    path.unlink()
    with _open_log(path) as again:
        assert again.read() == b""
