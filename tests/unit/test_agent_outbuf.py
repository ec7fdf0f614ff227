"""The output buffer: ordering, backpressure with hold, dropping without, reattach."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "guest-agent"))

from boxlite_agent.outbuf import BufferBusy, Chunk, OutputBuffer, Status


def drain(buf: OutputBuffer, limit: int | None = None) -> list[tuple[int, bytes]]:
    token = buf.attach()
    out: list[tuple[int, bytes]] = []
    try:
        while limit is None or len(out) < limit:
            item = buf.peek(token, 2.0)
            if item is Status.END:
                break
            assert isinstance(item, Chunk), item
            out.append((item.stream, item.data))
            buf.commit(token, item)
    finally:
        buf.detach(token)
    return out


def test_order_is_kept_across_streams() -> None:
    buf = OutputBuffer(hold=True)
    buf.put(0, b"a")
    buf.put(1, b"b")
    buf.put(0, b"c")
    buf.put(0, b"")  # ignored
    buf.close(0)
    buf.close(1)
    assert drain(buf) == [(0, b"a"), (1, b"b"), (0, b"c")]


def test_end_only_after_all_streams_closed_and_drained() -> None:
    buf = OutputBuffer(hold=False)
    token = buf.attach()
    assert buf.peek(token, 0.01) is Status.TIMEOUT
    buf.close(0)
    assert buf.peek(token, 0.01) is Status.TIMEOUT
    buf.put(1, b"x")
    buf.close(1)
    item = buf.peek(token, 0.01)
    assert isinstance(item, Chunk) and item.data == b"x"
    assert buf.eof
    buf.commit(token, item)
    assert buf.peek(token, 0.01) is Status.END


def test_hold_blocks_the_producer_until_drained() -> None:
    buf = OutputBuffer(hold=True, hold_limit=10)
    done = threading.Event()
    sent: list[int] = []

    def produce() -> None:
        for i in range(20):
            buf.put(0, bytes([i]) * 4)
            sent.append(i)
        buf.close(0)
        buf.close(1)
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    time.sleep(0.2)
    assert not done.is_set()
    assert len(sent) == 3  # 4+4+4 >= 10: the fourth put waits
    assert buf.buffered_bytes == 12
    data = b"".join(d for _, d in drain(buf))
    assert data == b"".join(bytes([i]) * 4 for i in range(20))
    assert done.wait(2)
    assert buf.dropped_bytes == 0


def test_without_hold_only_the_newest_bytes_are_kept() -> None:
    buf = OutputBuffer(hold=False, keep_limit=10)
    for i in range(10):
        buf.put(0, bytes([65 + i]) * 4)  # never blocks
    assert buf.buffered_bytes <= 10
    buf.close(0)
    buf.close(1)
    assert drain(buf) == [(0, b"IIII"), (0, b"JJJJ")]
    assert buf.dropped_bytes == 32


def test_a_single_large_chunk_is_kept() -> None:
    buf = OutputBuffer(hold=False, keep_limit=10)
    buf.put(0, b"x" * 100)
    buf.close(0)
    buf.close(1)
    assert drain(buf) == [(0, b"x" * 100)]


def test_without_hold_a_live_attacher_gets_everything() -> None:
    buf = OutputBuffer(hold=False, keep_limit=8)
    token = buf.attach()
    got: list[bytes] = []

    def consume() -> None:
        while True:
            item = buf.peek(token, 2.0)
            if item is Status.END:
                return
            assert isinstance(item, Chunk)
            time.sleep(0.001)
            got.append(item.data)
            buf.commit(token, item)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    expected = [bytes([i % 256]) * 5 for i in range(200)]
    for chunk in expected:
        buf.put(0, chunk)
    buf.close(0)
    buf.close(1)
    t.join(5)
    assert got == expected
    assert buf.dropped_bytes == 0


def test_detach_switches_back_to_dropping() -> None:
    buf = OutputBuffer(hold=False, keep_limit=8)
    token = buf.attach()
    buf.put(0, b"12345678")
    blocked = threading.Thread(target=buf.put, args=(0, b"abcd"), daemon=True)
    blocked.start()
    time.sleep(0.1)
    assert blocked.is_alive()  # a live attacher means backpressure
    buf.detach(token)
    blocked.join(2)
    assert not blocked.is_alive()
    assert buf.buffered_bytes <= 8


def test_one_attacher_at_a_time_and_reattach_keeps_undelivered() -> None:
    buf = OutputBuffer(hold=True)
    for i in range(5):
        buf.put(0, str(i).encode())
    buf.close(0)
    buf.close(1)
    first = buf.attach()
    with pytest.raises(BufferBusy):
        buf.attach()
    item = buf.peek(first, 1)
    assert isinstance(item, Chunk)
    buf.commit(first, item)  # "0" delivered
    item = buf.peek(first, 1)  # "1" peeked but never delivered
    buf.detach(first)
    assert buf.peek(first, 0.01) is Status.DETACHED
    assert isinstance(item, Chunk)
    buf.commit(first, item)  # a stale attacher cannot consume
    assert [d for _, d in drain(buf)] == [b"1", b"2", b"3", b"4"]


def test_a_dead_attacher_is_replaced() -> None:
    buf = OutputBuffer(hold=True)
    alive = [True]
    old = buf.attach(lambda: alive[0])
    with pytest.raises(BufferBusy):
        buf.attach()
    alive[0] = False
    new = buf.attach()
    assert buf.peek(old, 0.01) is Status.DETACHED
    buf.detach(old)  # a late detach of the old one leaves the new one attached
    buf.close(0)
    buf.close(1)
    assert buf.peek(new, 0.01) is Status.END


def test_commit_of_a_dropped_chunk_is_a_noop() -> None:
    buf = OutputBuffer(hold=False, keep_limit=4)
    token = buf.attach()
    buf.put(0, b"aaaa")
    head = buf.peek(token, 1)
    assert isinstance(head, Chunk)
    buf.detach(token)
    buf.put(0, b"bbbb")  # drops "aaaa"
    token = buf.attach()
    buf.commit(token, head)
    item = buf.peek(token, 1)
    assert isinstance(item, Chunk) and item.data == b"bbbb"


def test_release_unblocks_a_held_producer() -> None:
    buf = OutputBuffer(hold=True, hold_limit=4, keep_limit=4)
    buf.put(0, b"1234")
    t = threading.Thread(target=buf.put, args=(0, b"5678"), daemon=True)
    t.start()
    time.sleep(0.05)
    assert t.is_alive()
    buf.release()
    t.join(2)
    assert not t.is_alive()
    assert buf.buffered_bytes == 4


@pytest.mark.parametrize("release_on_detach", [True, False])
def test_a_detach_ends_the_hold_of_an_exec_that_asked(release_on_detach: bool) -> None:
    """exec -it's: held for its CLI until that detaches (or dies); then the process is
    never paused by output nobody will read, which keeps only its newest bytes. A
    foreground run's main process stays held for the next attacher (its shim)."""
    buf = OutputBuffer(hold=True, hold_limit=4, keep_limit=4,
                       release_on_detach=release_on_detach)
    buf.put(0, b"1234")
    buf.detach(buf.attach())
    t = threading.Thread(target=buf.put, args=(0, b"5678"), daemon=True)
    t.start()
    t.join(0.3)
    assert t.is_alive() is not release_on_detach
    if release_on_detach:
        assert buf.buffered_bytes == 4 and buf.dropped_bytes == 4
    buf.release()
    t.join(2)


def test_a_dropped_stream_loses_its_chunks_and_never_blocks() -> None:
    buf = OutputBuffer(hold=True, hold_limit=4)
    buf.put(1, b"e")
    buf.put(0, b"aaaa")  # at the limit now: the next put blocks
    blocked = threading.Thread(target=buf.put, args=(0, b"bbbb"))
    blocked.start()
    time.sleep(0.1)
    assert blocked.is_alive()
    buf.drop(0)
    blocked.join(2)
    assert not blocked.is_alive()  # the blocked producer of the dropped stream is let go
    buf.put(0, b"cccc")  # dropped at once, never kept
    buf.put(1, b"f")
    buf.close(0)
    buf.close(1)
    assert drain(buf) == [(1, b"e"), (1, b"f")]
