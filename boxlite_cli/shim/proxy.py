"""A transparent gRPC proxy: every call on agent.sock is forwarded, bytes unchanged.

All methods are proxied as stream-stream calls, which is wire-compatible with unary
and server-streaming ones. The proxy also tells its owner when an Attach of a given
exec ends, so the shim knows when the main process's output has been delivered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from boxlite_cli.agent.pb import agent_pb2 as pb

ATTACH = "/boxlite.v1.Agent/Attach"


class AttachTracker:
    """Counts live Attach calls per exec id and remembers those that reached EOF."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.active: dict[str, int] = {}
        self.completed: set[str] = set()

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

    def wait_delivered(self, exec_id: str, idle_grace_s: float) -> None:
        """Return once an Attach of `exec_id` reached EOF, or none was live for the grace."""
        with self.cond:
            idle_since: float | None = None
            while exec_id not in self.completed:
                if self.active.get(exec_id, 0) > 0:
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

    def __init__(self, upstream: grpc.Channel, tracker: AttachTracker) -> None:
        self.upstream = upstream
        self.tracker = tracker

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        method: str = details.method
        return grpc.stream_stream_rpc_method_handler(self._forwarder(method))

    def _forwarder(self, method: str) -> Callable[[Iterator[bytes], grpc.ServicerContext],
                                                  Iterator[bytes]]:
        def forward(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
            exec_id = None
            if method == ATTACH:
                first = next(requests, None)
                if first is None:
                    return
                exec_id = pb.AttachRequest.FromString(first).exec_id
                requests = _prepend(first, requests)
                self.tracker.begin(exec_id)
            remaining = context.time_remaining()
            call: Any = self.upstream.stream_stream(method, None, None)(
                requests, timeout=remaining if remaining and remaining < 1e8 else None)
            context.add_callback(call.cancel)
            complete = False
            try:
                yield from call
                complete = True
            except grpc.RpcError as e:
                if context.is_active():
                    context.abort(e.code(), e.details() or "")
            finally:
                if exec_id is not None:
                    self.tracker.end(exec_id, complete)

        return forward


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
