"""The framed container log: what the shim appends is what `logs` reads back."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from boxlite_cli.shim.logframes import HEADER, read_frames, write_frame

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
