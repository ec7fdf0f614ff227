"""The host's ways in: the virtio-serial port and (cloud-hypervisor) vsock.

Both end in the gRPC server's unix socket through bridge.py. Nothing here is
needed on a development host.
"""

from __future__ import annotations

import errno
import glob
import os
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable

from boxlite_agent import console
from boxlite_agent.bridge import splice

PORT_NAME = "org.boxlite.agent.0"
VSOCK_PORT = 2695
VIRTIO_ID_VSOCK = 0x13


def find_port(
    name: str = PORT_NAME, sys_dir: str = "/sys/class/virtio-ports", dev_dir: str = "/dev"
) -> str | None:
    """The /dev node of the virtio-serial port called ``name`` (created if missing)."""
    for name_file in sorted(glob.glob(os.path.join(sys_dir, "*", "name"))):
        try:
            with open(name_file) as f:
                if f.read().strip() != name:
                    continue
        except OSError:
            continue
        port_dir = os.path.dirname(name_file)
        node = os.path.join(dev_dir, os.path.basename(port_dir))
        if not os.path.exists(node):
            with open(os.path.join(port_dir, "dev")) as f:
                major, minor = (int(x) for x in f.read().strip().split(":"))
            os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(major, minor))
        return node
    return None


def wait_for_port(name: str = PORT_NAME, timeout: float = 10.0) -> str | None:
    deadline = time.monotonic() + timeout
    while True:
        node = find_port(name)
        if node is not None or time.monotonic() >= deadline:
            return node
        time.sleep(0.05)


def port_opener(node: str) -> Callable[[], int]:
    def open_port() -> int:
        return os.open(node, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)

    return open_port


def _has_vsock_device(sys_dir: str = "/sys/bus/virtio/devices") -> bool:
    for device_file in glob.glob(os.path.join(sys_dir, "*", "device")):
        try:
            with open(device_file) as f:
                if int(f.read().strip(), 16) == VIRTIO_ID_VSOCK:
                    return True
        except (OSError, ValueError):
            continue
    return False


def _vsock_listener(port: int) -> socket.socket:
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.bind((socket.VMADDR_CID_ANY, port))
        s.listen(64)
    except BaseException:
        s.close()
        raise
    return s


LOOPBACK_FLAG = "boxlite.vsock_loopback=1"


def _cmdline_has(flag: str, path: str = "/proc/cmdline") -> bool:
    try:
        with open(path) as f:
            return flag in f.read().split()
    except OSError:
        return False


def vsock_modules(has_device: bool, loopback: bool) -> list[str]:
    """The vsock transports to load: virtio's when the VM has a vsock device
    (cloud-hypervisor), the loopback one (CID 1, in-guest clients) when the kernel
    command line asks for it (tests, debugging). Neither: no vsock at all."""
    modules = []
    if has_device:
        modules.append("vmw_vsock_virtio_transport")
    if loopback:
        modules.append("vsock_loopback")
    return modules


def listen_vsock(port: int = VSOCK_PORT) -> socket.socket | None:
    """A vsock listener on ``port`` once its transports are loaded, or None when the VM
    offers no vsock (QEMU with virtio-serial only: nothing is loaded then)."""
    if not hasattr(socket, "AF_VSOCK"):
        return None
    modules = vsock_modules(_has_vsock_device(), _cmdline_has(LOOPBACK_FLAG))
    if not modules:
        return None
    # The transport must be loaded before the host connects: binding alone works with
    # just the vsock core (auto-loaded with the first AF_VSOCK socket), which would
    # leave a listener nobody can reach.
    proc = subprocess.run(["modprobe", "-a", *modules], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        console.log(f"boxlite-agent: modprobe {' '.join(modules)} failed: "
                    f"{proc.stderr.decode(errors='replace').strip()}")
    try:
        listener = _vsock_listener(port)
    except OSError as e:
        console.log(f"boxlite-agent: vsock unavailable: {e}")
        return None
    console.log(f"boxlite-agent: listening on vsock port {port} ({' '.join(modules)})")
    return listener


def serve_listener(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    """Accept connections until the listener is closed, splicing each to a new
    upstream connection (one pair of threads per connection)."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError as e:
            if listener.fileno() < 0 or e.errno in (errno.EBADF, errno.EINVAL):
                return  # the listener was closed
            console.log(f"boxlite-agent: accept: {e}")
            time.sleep(0.1)
            continue
        threading.Thread(target=_serve_one, args=(conn, connect), daemon=True).start()


def _serve_one(conn: socket.socket, connect: Callable[[], socket.socket]) -> None:
    try:
        up = connect()
    except OSError as e:
        console.log(f"boxlite-agent: vsock: cannot reach the server: {e}")
        conn.close()
        return
    splice(conn, up)
