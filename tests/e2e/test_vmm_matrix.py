"""The core run/exec/stop path under each VMM, and the agent's vsock listener.

cloud-hypervisor needs its binary on PATH and working KVM; where either is missing its
cases skip with that reason (shown by `pytest -rs`). The vsock test boots QEMU with the
guest's vsock loopback transport (`boxlite.vsock_loopback=1`), so the listener that
cloud-hypervisor's hybrid vsock reaches is exercised on every host.
"""

from __future__ import annotations

import json
import shutil

import pytest

from boxlite_cli.vmm.accel import static_kvm_problem
from tests.e2e.conftest import IMAGE, bx

VMMS = ["qemu", "cloud-hypervisor"]

# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server answers with its
# own SETTINGS frame (type 4) first.
VSOCK_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
s.settimeout(20)
s.connect((1, 2695))
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
head = b""
while len(head) < 9:
    chunk = s.recv(9 - len(head))
    if not chunk:
        sys.exit("closed after %r" % head)
    head += chunk
print("frame-type", head[3])
"""


def skip_reason(vmm: str) -> str | None:
    if vmm != "cloud-hypervisor":
        return None
    if shutil.which("cloud-hypervisor") is None:
        return "cloud-hypervisor not on PATH (get it from its GitHub releases)"
    problem = static_kvm_problem()
    if problem:
        return f"cloud-hypervisor needs KVM: {problem}"
    return None


@pytest.fixture(params=VMMS)
def vmm(request: pytest.FixtureRequest) -> str:
    reason = skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    return str(request.param)


def test_run_exec_stop(vmm: str) -> None:
    run = bx("run", "-d", "--vmm", vmm, "--network", "none", IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr.decode()
    box = run.stdout.decode().strip()
    try:
        out = bx("exec", box, "sh", "-c", "echo hello from $(uname -s); exit 3")
        assert out.returncode == 3, out.stderr.decode()
        assert out.stdout == b"hello from Linux\n"
        state = json.loads(bx("inspect", box).stdout)
        state = state[0] if isinstance(state, list) else state
        assert state["vmm"] == vmm
        assert state["config"]["vmm"] == vmm
        stop = bx("stop", "-t", "5", box)
        assert stop.returncode == 0, stop.stderr.decode()
        ps = json.loads(bx("ps", "-a", "--format", "json").stdout)
        assert [b["status"] for b in ps if b["id"] == box] == ["exited"]
    finally:
        bx("rm", "-f", box)


def test_cloud_hypervisor_with_nat_is_one_clear_error() -> None:
    out = bx("create", "--vmm", "cloud-hypervisor", IMAGE, "true")
    assert out.returncode == 125
    err = out.stderr.decode()
    assert "cloud-hypervisor has no user-mode network" in err
    assert len([line for line in err.splitlines() if line.strip()]) <= 2  # error + hint


def test_agent_answers_on_vsock_inside_the_guest() -> None:
    """A process in the box reaches the agent over AF_VSOCK CID 1 (loopback) port 2695
    and gets the gRPC server's HTTP/2 SETTINGS frame."""
    run = bx("run", "--rm", "--vmm", "qemu", "--network", "none", IMAGE,
             "python3", "-c", VSOCK_CLIENT,
             env={"BOXLITE_GUEST_CMDLINE": "boxlite.vsock_loopback=1"})
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout.decode().strip() == "frame-type 4"
