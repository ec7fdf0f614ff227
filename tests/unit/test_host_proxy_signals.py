"""The shim's gRPC proxy holds a Signal while its box is paused (the guest would answer
nothing): the caller hears so at once (SignalHeld), and the signal reaches the agent at
the unpause. A real gRPC server with a fake agent stands behind the proxy."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from boxlite_cli.agent.client import AgentClient
from boxlite_cli.agent.pb import agent_pb2 as pb
from boxlite_cli.agent.pb import agent_pb2_grpc as pb_grpc
from boxlite_cli.errors import SignalHeld
from boxlite_cli.shim import proxy
from boxlite_cli.shim.proxy import AttachTracker, ProxyHandler

GUARD_S = 30  # a hang guard: what works takes milliseconds


class SignalledAgent(pb_grpc.AgentServicer):  # type: ignore[misc]
    """Takes Signal calls and remembers them."""

    def __init__(self) -> None:
        self.signals: list[tuple[str, int, bool]] = []
        self.got = threading.Event()

    def Signal(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.signals.append((request.exec_id, request.signal, request.group))
        self.got.set()
        return pb.SignalResponse()


class Pause:
    """The box's paused flag, as the shim reads it from the box's state."""

    def __init__(self) -> None:
        self.on = False
        self.asked = threading.Event()

    def __call__(self) -> bool:
        self.asked.set()
        return self.on


@contextlib.contextmanager
def proxied(pause: Pause) -> Iterator[tuple[SignalledAgent, AgentClient]]:
    sockdir = Path(tempfile.mkdtemp(prefix="bls-", dir="/tmp"))  # (sun_path: 108 bytes)
    agent = SignalledAgent()
    upstream = grpc.server(ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_AgentServicer_to_server(agent, upstream)
    upstream.add_insecure_port(f"unix:{sockdir / 'vm.sock'}")
    upstream.start()
    channel = grpc.insecure_channel(f"unix:{sockdir / 'vm.sock'}")
    server = grpc.server(ThreadPoolExecutor(max_workers=8),
                         handlers=[ProxyHandler(channel, AttachTracker(), paused=pause)])
    server.add_insecure_port(f"unix:{sockdir / 'agent.sock'}")
    server.start()
    client = AgentClient.connect(f"unix:{sockdir / 'agent.sock'}")
    try:
        yield agent, client
    finally:
        client.close()
        server.stop(0)
        channel.close()
        upstream.stop(0)
        shutil.rmtree(sockdir, ignore_errors=True)


def test_a_signal_passes_through_while_the_box_runs() -> None:
    with proxied(Pause()) as (agent, client):
        client.signal("e1", 15, group=True)
        assert agent.signals == [("e1", 15, True)]


def test_a_signal_while_paused_is_held_and_delivered_at_the_unpause(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy, "UNPAUSE_POLL_S", 0.01)
    pause = Pause()
    pause.on = True
    with proxied(pause) as (agent, client):
        with pytest.raises(SignalHeld, match="the box is paused: the process gets the signal "
                                             "once it is unpaused"):
            client.signal("e1", 15, group=True)
        pause.asked.clear()
        assert pause.asked.wait(GUARD_S), "nothing waits for the unpause"
        assert agent.signals == []  # (the guest answers nothing while paused)
        pause.on = False
        assert agent.got.wait(GUARD_S), "the held signal never reached the agent"
        assert agent.signals == [("e1", 15, True)]
