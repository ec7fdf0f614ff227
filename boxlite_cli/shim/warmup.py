"""A spare's warm-up (shim/spare.py): the calls that make its guest run, once, what
the first box of a restored VM runs first, then the VM paused until a box takes it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from boxlite_cli.agent.client import AgentClient, open_channel
from boxlite_cli.agent.pb import agent_pb2 as pb
from boxlite_cli.errors import VmError
from boxlite_cli.payload import ROOTFS_DISK_SERIAL
from boxlite_cli.shim.child import Process
from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.vmm.drivers import get_driver

CALL_S = 1.0  # one Ping's wait; the whole warm-up is bounded by the boot timeout
WARM_UP_HOSTNAME = "spare"
WARM_UP_MAC = "02:00:00:00:00:01"  # (locally administered; no box has it)


@dataclass
class Adopted:
    """A spare's connection to its agent, taken over by the box's shim."""

    channel: grpc.Channel
    client: AgentClient


def warm_up(launch: Launch, vmm: Process, stopping: threading.Event) -> Adopted:
    """Connect, Ping, Init the guest as a box would (with a placeholder hostname and
    MAC address, no hosts), start one process as a box's first is started (nothing of
    the image: PingRequest.warm_up); then pause the VM. Raises VmError when the agent
    does not answer in time."""
    driver = get_driver(launch.driver)
    path = driver.agent_channel(launch.vm).unix_path
    if path is None:
        raise VmError(f"{launch.driver} has no agent socket a spare could keep")
    channel = open_channel(f"unix:{path}")
    client = AgentClient(channel)
    net = launch.network
    # (Every part of a box's Init: a hostname and a MAC address too, or the box's own
    # Init would be the first to run that code. Each is set again by the box's Init.)
    init = pb.InitRequest(rootfs_serial=ROOTFS_DISK_SERIAL, clock_ns=time.time_ns(),
                          entropy=os.urandom(64), hostname=WARM_UP_HOSTNAME,
                          network=pb.NetworkConfig(mode=net.mode, address=net.address,
                                                   gateway=net.gateway, dns=net.dns,
                                                   mac=WARM_UP_MAC))
    deadline = time.monotonic() + launch.boot_timeout_s
    calls: list[Callable[[], object]] = [
        lambda: client.stub.Ping(pb.PingRequest(), timeout=CALL_S, wait_for_ready=True),
        lambda: client.stub.Init(init, timeout=launch.boot_timeout_s),
        # (the exec helper, run once as a box's first process is: see PingRequest)
        lambda: client.stub.Ping(pb.PingRequest(warm_up=True), timeout=launch.boot_timeout_s)]
    for call in calls:
        while True:
            if stopping.is_set() or vmm.poll() is not None:
                channel.close()
                raise VmError("the spare's VM stopped during its warm-up")
            try:
                call()
                break
            except grpc.RpcError as e:
                retry = e.code() in (grpc.StatusCode.UNAVAILABLE,
                                     grpc.StatusCode.DEADLINE_EXCEEDED)
                if not retry or time.monotonic() > deadline:
                    channel.close()
                    raise VmError(f"the spare's agent did not answer: {e.details()}") from e
                time.sleep(0.05)
    driver.control(launch.vm).pause()
    return Adopted(channel, client)
