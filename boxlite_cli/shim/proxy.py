"""A transparent gRPC proxy: every call on agent.sock is forwarded, bytes unchanged.

All methods are proxied as stream-stream calls, which is wire-compatible with unary
and server-streaming ones. The proxy also tells its owner when an Attach of a given
exec ends, so the shim knows when the main process's output has been delivered.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from boxlite_cli.agent.client import PIN_METADATA, RESTARTED, SIGNAL_HELD
from boxlite_cli.agent.pb import agent_pb2 as pb

ATTACH = "/boxlite.v1.Agent/Attach"
WAIT = "/boxlite.v1.Agent/Wait"
SIGNAL = "/boxlite.v1.Agent/Signal"
UNPAUSE_POLL_S = 0.25  # how often a signal held for a paused box looks for its unpause
HELD_SIGNAL_TIMEOUT_S = 10.0  # the deadline of a held signal's call, once unpaused
# The calls whose completion the shim waits for, and their tracker key.
TRACKED: dict[str, Callable[[bytes], str]] = {
    ATTACH: lambda req: pb.AttachRequest.FromString(req).exec_id,
    WAIT: lambda req: "wait:" + pb.WaitRequest.FromString(req).exec_id,
}


class AttachTracker:
    """Counts live calls per key and remembers the keys whose call ran to the end.

    Keys: an exec id for its Attach calls, `wait:<exec id>` for its Wait calls.
    `on_abandoned(key)` is told when the last live call of a key ended before its end
    (its client went away: detached, or killed).
    """

    def __init__(self, on_abandoned: Callable[[str], None] | None = None) -> None:
        self.cond = threading.Condition()
        self.active: dict[str, int] = {}
        self.completed: set[str] = set()
        self.on_abandoned = on_abandoned

    def begin(self, exec_id: str) -> None:
        with self.cond:
            self.active[exec_id] = self.active.get(exec_id, 0) + 1
            self.cond.notify_all()

    def end(self, exec_id: str, complete: bool) -> None:
        with self.cond:
            self.active[exec_id] -= 1
            if complete:
                self.completed.add(exec_id)
            self.cond.notify_all()
            abandoned = (not complete and self.active[exec_id] == 0
                         and exec_id not in self.completed)
        if abandoned and self.on_abandoned is not None:
            self.on_abandoned(exec_id)

    def wait_idle(self, keys: list[str], timeout_s: float) -> None:
        """Return once no call of `keys` is live (or after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while any(self.active.get(k, 0) > 0 for k in keys):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(left)

    def wait_delivered(self, keys: str | list[str], idle_grace_s: float) -> None:
        """Return once a call of every key ran to the end, or none was live for the grace."""
        wanted = [keys] if isinstance(keys, str) else keys
        with self.cond:
            idle_since: float | None = None
            while not all(k in self.completed for k in wanted):
                if any(self.active.get(k, 0) > 0 for k in wanted):
                    idle_since = None
                    self.cond.wait()
                    continue
                now = time.monotonic()
                idle_since = now if idle_since is None else idle_since
                left = idle_grace_s - (now - idle_since)
                if left <= 0:
                    return
                self.cond.wait(left)


class ProxyHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Forwards every method to `upstream`."""

    def __init__(self, upstream: grpc.Channel, tracker: AttachTracker,
                 tee: dict[str, Callable[[bytes], None]] | None = None,
                 paused: Callable[[], bool] = lambda: False) -> None:
        """`tee[exec_id]` also gets every output chunk (serialised) that an Attach of
        that exec delivers: how a foreground run's output reaches the box's log.
        `paused`: the box is paused; a Signal then is held for the unpause (its guest
        answers nothing meanwhile) and its caller told so at once (SIGNAL_HELD)."""
        self.upstream = upstream
        self.tracker = tracker
        self.tee = tee or {}
        self.paused = paused
        self.pin = str(os.getpid())  # (see PIN_METADATA)

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        method: str = details.method
        return grpc.stream_stream_rpc_method_handler(self._forwarder(method))

    def _forwarder(self, method: str) -> Callable[[Iterator[bytes], grpc.ServicerContext],
                                                  Iterator[bytes]]:
        def forward(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            pins = [v for k, v in context.invocation_metadata() or () if k == PIN_METADATA]
            if pins and pins[0] != self.pin:
                context.abort(grpc.StatusCode.ABORTED, RESTARTED)
            if method == SIGNAL and self.paused():
                self._hold(next(requests, None), context)
                return
            key = None
            if method in TRACKED:
                first = next(requests, None)
                if first is None:
                    return
                key = TRACKED[method](first)
                requests = _prepend(first, requests)
                self.tracker.begin(key)
            remaining = context.time_remaining()
            call: Any = self.upstream.stream_stream(method, None, None)(
                requests, timeout=remaining if remaining and remaining < 1e8 else None)
            context.add_callback(call.cancel)
            complete = False
            tee = self.tee.get(key) if method == ATTACH and key is not None else None
            try:
                for response in call:
                    if tee is not None:
                        tee(response)
                    yield response
                complete = True
            except grpc.RpcError as e:
                if context.is_active():
                    context.abort(e.code(), e.details() or "")
            finally:
                if not complete:
                    # Our side ended first (the client went away, or the server closed
                    # this generator): the upstream call must not run on. (The
                    # termination callback alone misses a cancel that lands while this
                    # generator waits at its yield: then it is closed, not resumed.)
                    call.cancel()
                if key is not None:
                    self.tracker.end(key, complete)

        return forward

    def _hold(self, request: bytes | None, context: grpc.ServicerContext) -> None:
        """Deliver the Signal `request` once the box is unpaused; its caller hears now."""
        if request is not None:
            threading.Thread(target=self._deliver_once_unpaused, args=(request,),
                             name="signal-held", daemon=True).start()
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, SIGNAL_HELD)

    def _deliver_once_unpaused(self, request: bytes) -> None:
        while self.paused():
            time.sleep(UNPAUSE_POLL_S)
        with contextlib.suppress(grpc.RpcError):  # (the process or the box ended meanwhile)
            self.upstream.unary_unary(SIGNAL, None, None)(request, timeout=HELD_SIGNAL_TIMEOUT_S)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
