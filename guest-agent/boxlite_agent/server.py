"""The agent process: the gRPC server on a unix socket plus the host channel bridges.

In the VM, ``init`` forks and calls ``main([])``. On a development host,
``python -m boxlite_agent --local --listen unix:/tmp/agent.sock`` serves the
same API with execs chrooted to ``--rootfs`` (default ``/``) and no VM duties.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc

from boxlite_agent import console
from boxlite_agent.bridge import PortBridge, connect_unix
from boxlite_agent.guest import Guest, LocalGuest
from boxlite_agent.pb import agent_pb2_grpc
from boxlite_agent.service import AgentService
from boxlite_agent.threads import THREADS, warm_pool

if TYPE_CHECKING:
    import argparse

SOCKET_PATH = "/run/boxlite/agent.sock"
MAX_WORKERS = 128
# Threads started at start-up, so that a warm-start template has them (see threads.py):
# RPC workers for Init, then a foreground run's Attach and Wait; the main process's
# output readers and watcher, and those of one exec.
WARM_RPC_WORKERS = 4
WARM_THREADS = 6
READY_LINE = "boxlite-agent: ready"

# The host may send keepalive pings on an otherwise idle connection: allow them
# instead of answering with GOAWAY "too_many_pings".
SERVER_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
    ("grpc.http2.max_ping_strikes", 0),
]


def build_server(service: AgentService, address: str, max_workers: int = MAX_WORKERS,
                 warm_workers: int = 0) -> grpc.Server:
    """A started-not-yet gRPC server serving ``service`` on ``address`` (e.g. unix:/path),
    with ``warm_workers`` of its worker threads started already."""
    executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc")
    warm_pool(executor, warm_workers)
    server = grpc.server(executor, options=SERVER_OPTIONS)
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    if not server.add_insecure_port(address):
        raise OSError(f"cannot listen on {address}")
    return server


def _protect_from_oom() -> None:
    """Let the OOM killer pick container processes (spawn resets them to 0) first."""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000")
    except OSError:
        pass


# Open files: the agent's and, inherited, every box process's. The hard limit is
# containerd's for containers, so a process of a box can raise its soft limit as it
# could under docker (the kernel's own 4096 could not be raised without root).
NOFILE_SOFT = 4096
NOFILE_HARD = 524288


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (max(soft, NOFILE_SOFT), max(hard, NOFILE_HARD)))
    except (OSError, ValueError):  # (not root: a development host)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _unix_path(address: str) -> str:
    return address.removeprefix("unix://").removeprefix("unix:")


def _start_channels(socket_path: str) -> None:
    """Bridge the virtio port and (if available) vsock to the server socket."""
    from boxlite_agent import channels  # VM only

    connect = connect_unix(socket_path)

    def serve_port() -> None:
        node = channels.wait_for_port()
        if node is None:
            console.log(f"boxlite-agent: no virtio port named {channels.PORT_NAME}")
            return
        PortBridge(channels.port_opener(node), connect).run()

    threading.Thread(target=serve_port, name="port-bridge", daemon=True).start()

    def serve_vsock() -> None:
        listener = channels.listen_vsock()
        if listener is not None:
            channels.serve_listener(listener, connect)

    threading.Thread(target=serve_vsock, name="vsock-bridge", daemon=True).start()


class _Defaults:
    local = False
    listen = f"unix:{SOCKET_PATH}"
    rootfs = "/"


def _parse_args(argv: list[str]) -> argparse.Namespace:
    import argparse  # only for development runs: it costs start-up time under TCG

    parser = argparse.ArgumentParser(prog="boxlite-agent")
    parser.add_argument("--local", action="store_true", help="development host: no VM duties")
    parser.add_argument("--listen", default=f"unix:{SOCKET_PATH}")
    parser.add_argument("--rootfs", default="/", help="with --local: the container root")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until Shutdown. ``init`` calls ``main([])``: argparse is not even imported."""
    if argv is None:
        argv = sys.argv[1:]
    args: argparse.Namespace | _Defaults = _parse_args(argv) if argv else _Defaults()

    _raise_nofile()
    guest: Guest
    stop = threading.Event()
    if args.local:
        console.use_stderr()
        guest = LocalGuest(args.rootfs, on_shutdown=stop.set)
    else:
        from boxlite_agent.vm import VmGuest  # VM only

        _protect_from_oom()
        guest = VmGuest()
    path = _unix_path(args.listen)
    if args.listen.startswith("unix:"):
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
    server = build_server(AgentService(guest), args.listen, warm_workers=WARM_RPC_WORKERS)
    THREADS.warm(WARM_THREADS)
    server.start()
    if not args.local:
        _start_channels(path)
    console.log(READY_LINE)
    stop.wait()
    server.stop(1.0).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
