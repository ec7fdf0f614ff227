"""The shim's gRPC proxy: calls pass through unchanged, and Attach ends are tracked.

A real gRPC server with a fake `boxlite.v1.Agent` stands in for the guest agent; the
proxy serves on a second unix socket in front of it, as the shim does on agent.sock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from boxlite_cli.agent.client import STDERR, STDOUT, AgentClient
from boxlite_cli.agent.pb import agent_pb2 as pb
from boxlite_cli.agent.pb import agent_pb2_grpc as pb_grpc
from boxlite_cli.errors import AgentError, BoxRestarted, UsageError
from boxlite_cli.shim import proxy
from boxlite_cli.shim.proxy import ATTACH, AttachTracker, ProxyHandler

BIG = bytes(range(256)) * 8192  # 2 MiB, more than one HTTP/2 frame window


class FakeAgent(pb_grpc.AgentServicer):  # type: ignore[misc]
    """Answers like the guest agent would, and remembers what it was sent."""

    def __init__(self) -> None:
        self.inputs: dict[str, tuple[bytes, bool, int]] = {}
        self.attach_cancelled = threading.Event()
        self.wait_cancelled = threading.Event()
        self.waits_heard: list[str] = []
        self.wait_time_left: list[float | None] = []  # each Wait's deadline, as it came

    def Ping(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.PingResponse(agent_version="fake-1.0", kernel="6.1.0-test", uptime_s=12.5)

    def Exec(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.argv:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "argv is empty")
        return pb.ExecResponse(exec_id=request.exec_id or "generated", pid=len(request.env) + 100)

    def Attach(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        if request.exec_id == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such process: missing")
        if request.exec_id == "endless":
            deadline = time.monotonic() + 20
            # The end of this call before the deadline is a cancellation. (A call
            # cancelled while this generator waits at its yield is never resumed: gRPC
            # only drops it; the termination callback still runs.)
            context.add_callback(
                lambda: time.monotonic() < deadline and self.attach_cancelled.set())
            yield pb.OutputChunk(stream=STDOUT, data=b"first")
            while context.is_active() and time.monotonic() < deadline:
                time.sleep(0.01)
            return
        yield pb.OutputChunk(stream=STDOUT, data=b"out " + request.exec_id.encode())
        yield pb.OutputChunk(stream=STDERR, data=b"err\x00\xff")
        yield pb.OutputChunk(stream=STDOUT, data=BIG)
        yield pb.OutputChunk(stream=STDOUT, data=b"")

    def Input(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        exec_id, data, closed, messages = "", b"", False, 0
        for chunk in request_iterator:
            messages += 1
            exec_id = exec_id or chunk.exec_id
            data += chunk.data
            closed = closed or chunk.close
        self.inputs[exec_id] = (data, closed, messages)
        return pb.InputResponse()

    def Wait(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.waits_heard.append(request.exec_id)
        if request.exec_id == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such process: missing")
        if request.exec_id == "bad":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "exec id must not be 'bad'")
        if request.exec_id == "busy":
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many waiters \u2639")
        if request.exec_id == "slow":
            self.wait_time_left.append(context.time_remaining())
            deadline = time.monotonic() + 60
            while context.is_active():
                if time.monotonic() > deadline:  # (only a bound: never answered in a test)
                    return pb.WaitResponse(exit_code=0)
                time.sleep(0.01)
            self.wait_cancelled.set()  # ended by the caller, not by running out
            return pb.WaitResponse(exit_code=0)
        return pb.WaitResponse(exit_code=3, signal=0, timed_out=False)


@dataclass
class Rig:
    agent: FakeAgent
    tracker: AttachTracker
    client: AgentClient
    proxy_target: str

    def stub(self) -> Any:
        return pb_grpc.AgentStub(self.client.channel)


@pytest.fixture
def rig() -> Iterator[Rig]:
    with make_rig() as made:
        yield made


def fake_upstream(sockdir: Path) -> tuple[FakeAgent, grpc.Server, grpc.Channel]:
    """The fake agent served on `sockdir`/vm.sock, and a channel to it."""
    agent = FakeAgent()
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_AgentServicer_to_server(agent, server)
    server.add_insecure_port(f"unix:{sockdir / 'vm.sock'}")
    server.start()
    return agent, server, grpc.insecure_channel(f"unix:{sockdir / 'vm.sock'}")


@contextlib.contextmanager
def make_rig() -> Iterator[Rig]:
    sockdir = Path(tempfile.mkdtemp(prefix="blp-", dir="/tmp"))  # short: sun_path is 108 bytes
    agent, upstream_server, channel = fake_upstream(sockdir)
    tracker = AttachTracker()
    proxy_server = grpc.server(ThreadPoolExecutor(max_workers=16),
                               handlers=[ProxyHandler(channel, tracker)])
    target = f"unix:{sockdir / 'agent.sock'}"
    proxy_server.add_insecure_port(target)
    proxy_server.start()
    client = AgentClient.connect(target)
    try:
        yield Rig(agent, tracker, client, target)
    finally:
        client.close()
        proxy_server.stop(0)
        channel.close()
        upstream_server.stop(0)
        shutil.rmtree(sockdir, ignore_errors=True)


GUARD_S = 30  # a hang guard: what should end at once, or once told, ends well within it
NEVER_S = 3600.0  # a grace or timeout that a test must never sit out


def wait_until(predicate: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


# unary, streaming, client streaming -------------------------------------------------------

def test_unary_ping_passes_through(rig: Rig) -> None:
    reply = rig.client.ping(timeout=10, wait_for_ready=True)
    assert (reply.agent_version, reply.kernel, reply.uptime_s) == ("fake-1.0", "6.1.0-test", 12.5)


def test_unary_exec_passes_fields_both_ways(rig: Rig) -> None:
    started = rig.client.exec(argv=["sh", "-c", "true"], env=["A=1", "B=2"], cwd="/", user="",
                              tty=False, rows=0, cols=0, stdin=False, timeout_s=0,
                              hold_output=True, exec_id="e1")
    assert (started.exec_id, started.pid) == ("e1", 102)


def test_server_streaming_attach_is_byte_exact_and_tracked(rig: Rig) -> None:
    chunks = list(rig.client.attach("main"))
    assert chunks == [(STDOUT, b"out main"), (STDERR, b"err\x00\xff"), (STDOUT, BIG),
                      (STDOUT, b"")]
    assert wait_until(lambda: "main" in rig.tracker.completed)
    assert rig.tracker.active["main"] == 0
    returned = _wait_in_thread(rig.tracker, "main", grace=NEVER_S)
    assert returned.wait(GUARD_S), "the completed Attach was not seen: it waits for the grace"


def test_client_streaming_input(rig: Rig) -> None:
    rig.client.send_input("main", iter([b"hello ", b"", BIG, b"bye"]))
    data, closed, messages = rig.agent.inputs["main"]
    assert data == b"hello " + BIG + b"bye"
    assert closed
    assert messages >= 5  # the first (exec id), the chunks, the close
    rig.client.send_input("open", iter([b"x"]), close=False)
    assert rig.agent.inputs["open"] == (b"x", False, 2)


def test_a_wait_sent_ahead_is_heard_at_once_and_answered_later(rig: Rig) -> None:
    """The shim sends the main process's Wait before it serves and records the box."""
    answer = rig.client.wait_later("main")
    deadline = time.monotonic() + 10
    while "main" not in rig.agent.waits_heard:  # before anyone asks for the answer
        assert time.monotonic() < deadline, "the Wait was not sent"
        time.sleep(0.01)
    assert answer().exit_code == 3
    with pytest.raises(AgentError, match="waiting for the process: no such process"):
        rig.client.wait_later("missing")()


def test_many_callers_at_once(rig: Rig) -> None:
    def call(i: int) -> tuple[str, list[tuple[int, bytes]]]:
        return rig.client.ping(timeout=10).agent_version, list(rig.client.attach(f"x{i}"))[:1]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, range(16)))
    assert results == [("fake-1.0", [(STDOUT, f"out x{i}".encode())]) for i in range(16)]


# errors --------------------------------------------------------------------------------

@pytest.mark.parametrize(("exec_id", "code", "details"), [
    ("missing", grpc.StatusCode.NOT_FOUND, "no such process: missing"),
    ("bad", grpc.StatusCode.INVALID_ARGUMENT, "exec id must not be 'bad'"),
    ("busy", grpc.StatusCode.RESOURCE_EXHAUSTED, "too many waiters \u2639"),
])
def test_upstream_error_code_and_details_pass_unchanged(rig: Rig, exec_id: str,
                                                        code: grpc.StatusCode,
                                                        details: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        rig.stub().Wait(pb.WaitRequest(exec_id=exec_id), timeout=10)
    assert info.value.code() == code
    assert info.value.details() == details


def test_agent_client_maps_passed_through_errors(rig: Rig) -> None:
    with pytest.raises(AgentError, match="no such process: missing") as info:
        rig.client.wait("missing", timeout=10)
    cause = info.value.__cause__
    assert isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(UsageError, match="must not be 'bad'"):
        rig.client.wait("bad", timeout=10)
    assert rig.client.wait("done", timeout=10).exit_code == 3


def test_error_in_a_server_stream_passes_through(rig: Rig) -> None:
    with pytest.raises(AgentError, match="no such process") as info:
        list(rig.client.attach("missing"))
    cause = info.value.__cause__
    assert isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.NOT_FOUND
    assert wait_until(lambda: rig.tracker.active.get("missing") == 0)
    assert "missing" not in rig.tracker.completed


def test_deadline_reaches_the_upstream_call(rig: Rig) -> None:
    with pytest.raises(AgentError) as info:
        rig.client.wait("slow", timeout=5)  # (time enough to reach the agent, under load)
    cause = info.value.__cause__
    assert isinstance(cause, grpc.RpcError)
    assert cause.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    [left] = rig.agent.wait_time_left
    # (a few ms over 5 may come of the deadline's rounding on the wire; none: 60 s or so)
    assert left is not None and left < 6, "the upstream call has no (or a later) deadline"
    assert rig.agent.wait_cancelled.wait(GUARD_S), "the agent's call was not ended"


def test_cancelled_attach_is_not_complete_and_ends_upstream(rig: Rig) -> None:
    stream = rig.client.attach("endless")
    assert next(stream) == (STDOUT, b"first")
    assert wait_until(lambda: rig.tracker.active.get("endless") == 1)
    stream.close()  # the client goes away mid-stream (cancels its call)
    assert wait_until(lambda: rig.tracker.active.get("endless") == 0)
    assert "endless" not in rig.tracker.completed
    assert rig.agent.attach_cancelled.wait(30), "the upstream Attach was not cancelled"


class SilentContext:
    """A servicer context that keeps its termination callbacks (as gRPC's does, until
    the RPC is cleaned up) and never runs them."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def time_remaining(self) -> None:
        return None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True

    def is_active(self) -> bool:
        return False


def test_a_forwarder_closed_mid_stream_cancels_its_upstream_call() -> None:
    """The server closes the response generator (a cancel that landed while it waited
    at its yield) and has not run the termination callbacks, which still hold the
    upstream call: that call is cancelled all the same."""
    sockdir = Path(tempfile.mkdtemp(prefix="blp-", dir="/tmp"))
    agent, server, channel = fake_upstream(sockdir)
    try:
        tracker = AttachTracker()
        forward = ProxyHandler(channel, tracker)._forwarder(ATTACH)
        request = pb.AttachRequest(exec_id="endless").SerializeToString()
        context = SilentContext()
        responses = forward(iter([request]), context)  # type: ignore[arg-type]
        assert pb.OutputChunk.FromString(next(responses)).data == b"first"
        responses.close()
        assert agent.attach_cancelled.wait(30), "the upstream Attach runs on"
        assert tracker.active == {"endless": 0} and not tracker.completed
    finally:
        channel.close()
        server.stop(0)
        shutil.rmtree(sockdir, ignore_errors=True)


def test_a_client_pinned_to_another_run_of_the_box_is_refused(rig: Rig) -> None:
    """A CLI attached to one run (pinned to its shim's PID) that reaches the shim of the
    next (a `restart` meanwhile: gRPC reconnects to the same socket path) is refused,
    every kind of call; one pinned to this run, or not pinned, passes."""
    this_run = AgentClient.connect(rig.proxy_target, pin=os.getpid())
    other_run = AgentClient.connect(rig.proxy_target, pin=os.getpid() + 1)
    try:
        assert this_run.ping(timeout=10, wait_for_ready=True).agent_version == "fake-1.0"
        assert list(this_run.attach("main"))[:1] == [(STDOUT, b"out main")]
        with pytest.raises(BoxRestarted, match="the box was restarted"):
            other_run.wait("main", timeout=10)
        with pytest.raises(BoxRestarted):
            list(other_run.attach("main"))
        with pytest.raises(BoxRestarted):
            other_run.send_input("main", iter([b"x"]))
        assert rig.client.ping(timeout=10).kernel == "6.1.0-test"
    finally:
        this_run.close()
        other_run.close()


def test_unknown_method_is_unimplemented_upstream(rig: Rig) -> None:
    call = rig.client.channel.unary_unary("/boxlite.v1.Agent/NoSuchMethod")
    with pytest.raises(grpc.RpcError) as info:
        call(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


# AttachTracker -------------------------------------------------------------------------

def in_thread(call: Callable[[], object]) -> threading.Event:
    """`call()` in a thread of its own; the event: it returned."""
    returned = threading.Event()

    def run() -> None:
        call()
        returned.set()

    threading.Thread(target=run, daemon=True).start()
    return returned


def _wait_in_thread(tracker: AttachTracker, exec_id: str, grace: float) -> threading.Event:
    """`tracker.wait_delivered(exec_id, grace)` in a thread; the event: it returned."""
    return in_thread(lambda: tracker.wait_delivered(exec_id, grace))


class FakeClock:
    """The proxy module's `time` in a test: it moves only when the tracker sits out a
    timed wait (see TimedWaitsPass), or when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0  # (the tests move it by binary fractions: sums stay exact)

    def monotonic(self) -> float:
        return self.now


class TimedWaitsPass(threading.Condition):
    """The tracker's condition on a FakeClock: a timed wait sits out its whole timeout
    on that clock at once, or, while `meanwhile` has something to do, half of it and
    then that (which may notify); an untimed one waits for a notify, as ever."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.timeouts: list[float | None] = []
        self.meanwhile: list[Callable[[], None]] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        assert len(self.timeouts) < 10_000, "the tracker keeps waiting"
        if timeout is None:
            return super().wait()
        if self.meanwhile:
            self.clock.now += timeout / 2
            self.meanwhile.pop(0)()
            return True
        self.clock.now += timeout
        return False


Clocked = tuple[AttachTracker, FakeClock, TimedWaitsPass]


@pytest.fixture
def clocked(monkeypatch: pytest.MonkeyPatch) -> Clocked:
    """A tracker whose graces and timeouts pass on a fake clock, at once."""
    clock = FakeClock()
    monkeypatch.setattr(proxy, "time", clock)
    tracker = AttachTracker()
    cond = tracker.cond = TimedWaitsPass(clock)
    return tracker, clock, cond


def test_wait_delivered_returns_when_an_attach_completes() -> None:
    tracker = AttachTracker()
    tracker.begin("main")
    returned = _wait_in_thread(tracker, "main", grace=NEVER_S)
    assert not returned.wait(0.2), "it returned while the Attach was live"
    tracker.end("main", complete=True)
    assert returned.wait(GUARD_S), "the Attach's end did not end the wait"


def test_wait_delivered_returns_at_once_when_already_complete() -> None:
    tracker = AttachTracker()
    tracker.begin("main")
    tracker.end("main", complete=True)
    returned = _wait_in_thread(tracker, "main", grace=NEVER_S)
    assert returned.wait(GUARD_S), "it waited for the idle grace"


def test_wait_delivered_gives_up_after_the_idle_grace(clocked: Clocked) -> None:
    tracker, clock, _ = clocked
    returned = _wait_in_thread(tracker, "main", grace=0.25)
    assert returned.wait(GUARD_S), "it never gave up"
    assert clock.now == 0.25  # it sat the grace out, and no more


def test_wait_delivered_keeps_waiting_while_an_attach_is_live(clocked: Clocked) -> None:
    tracker, clock, cond = clocked
    tracker.begin("main")
    returned = _wait_in_thread(tracker, "main", grace=0.25)
    assert wait_until(lambda: cond.timeouts), "it did not wait"
    clock.now += 4.0  # many graces: still waiting, someone is attached
    assert not returned.wait(0.2), "it gave up while an Attach was live"
    assert cond.timeouts == [None]  # (no grace runs while one is live)
    tracker.end("main", complete=False)  # it went away before EOF: the grace starts now
    assert returned.wait(GUARD_S), "it never gave up"
    assert "main" not in tracker.completed
    assert clock.now == 4.25  # the whole grace, from the Attach's end


def test_a_new_attach_within_the_grace_is_waited_for(clocked: Clocked) -> None:
    tracker, clock, cond = clocked
    cond.meanwhile.append(lambda: tracker.begin("main"))  # half way through the grace
    returned = _wait_in_thread(tracker, "main", grace=0.5)
    assert wait_until(lambda: None in cond.timeouts), "it did not wait for the new Attach"
    clock.now += 4.0  # longer than the grace: still waiting for the live attach
    assert not returned.wait(0.2), "it gave up while an Attach was live"
    tracker.end("main", complete=True)
    assert returned.wait(GUARD_S), "the Attach's end did not end the wait"
    assert "main" in tracker.completed


def test_other_exec_ids_do_not_count(clocked: Clocked) -> None:
    tracker, clock, _ = clocked
    tracker.begin("other")
    returned = _wait_in_thread(tracker, "main", grace=0.25)
    assert returned.wait(GUARD_S), "another exec's live Attach kept it waiting"
    assert clock.now == 0.25
    tracker.end("other", complete=True)
    assert "main" not in tracker.completed


def _wait_idle_in_thread(tracker: AttachTracker, keys: list[str], timeout_s: float
                         ) -> threading.Event:
    """`tracker.wait_idle(keys, timeout_s)` in a thread; the event: it returned."""
    return in_thread(lambda: tracker.wait_idle(keys, timeout_s))


def test_wait_idle_returns_once_the_live_calls_end() -> None:
    """A detached box's shim lets a `boxlite wait` hear the exit before the VM goes."""
    tracker = AttachTracker()
    assert _wait_idle_in_thread(tracker, ["wait:main"], NEVER_S).wait(GUARD_S), \
        "none live, yet it waited for the timeout"
    tracker.begin("wait:main")
    returned = _wait_idle_in_thread(tracker, ["wait:main"], NEVER_S)
    assert not returned.wait(0.2), "it returned while a Wait was live"
    tracker.end("wait:main", True)
    assert returned.wait(GUARD_S), "the Wait's end did not end the wait"


def test_wait_idle_gives_up_at_the_timeout(clocked: Clocked) -> None:
    tracker, clock, _ = clocked
    tracker.wait_idle(["wait:main"], 0.25)  # none live: at once
    assert clock.now == 0
    tracker.begin("wait:main")  # one that never ends: bounded
    assert _wait_idle_in_thread(tracker, ["wait:main"], 0.25).wait(GUARD_S), \
        "it never gave up"
    assert clock.now == 0.25


def test_a_key_whose_last_call_ended_early_is_reported_abandoned() -> None:
    """(The shim takes the main process's output over when its foreground client left.)"""
    left: list[str] = []
    tracker = AttachTracker(on_abandoned=left.append)
    tracker.begin("main")
    tracker.begin("main")
    tracker.end("main", complete=False)
    assert left == []  # (another client still reads)
    tracker.end("main", complete=False)
    assert left == ["main"]
    tracker.begin("x")
    tracker.end("x", complete=True)
    tracker.begin("x")
    tracker.end("x", complete=False)
    assert left == ["main"]  # (its output was delivered to the end already)
