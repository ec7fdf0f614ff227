"""procname: the agent's processes rename themselves (comm and command line), so
`pkill -f python` in a box does not end them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AGENT_DIR = str(Path(__file__).resolve().parents[2] / "guest-agent")
CAP_SYS_RESOURCE = 24
SCRIPT = ("from boxlite_agent.procname import set_process_name\n"
          "ok = set_process_name('boxlite-agent-with-a-long-name')\n"
          "print(ok, open('/proc/self/comm').read().strip(), "
          "open('/proc/self/cmdline', 'rb').read(), flush=True)\n"
          "import os; os._exit(0)\n")


def may_set_command_line() -> bool:
    status = Path("/proc/self/status").read_text()
    effective = int(next(line.split()[1] for line in status.splitlines()
                         if line.startswith("CapEff:")), 16)
    return bool(effective >> CAP_SYS_RESOURCE & 1)


def renamed() -> tuple[str, str, str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=AGENT_DIR), check=True).stdout
    ok, comm, cmdline = out.split(" ", 2)
    return ok, comm, cmdline.strip()


def test_the_name_the_kernel_keeps_is_changed() -> None:
    _, comm, _ = renamed()
    assert comm == "boxlite-agent-w"  # (comm holds 15 bytes)


def test_the_command_line_is_changed_or_left_whole() -> None:
    ok, _, cmdline = renamed()
    if may_set_command_line():  # (root in the VM; not a container without the capability)
        assert (ok, cmdline) == ("True", repr(b"boxlite-agent-with-a-long-name\x00"))
    else:  # the kernel refuses: the original command line, not a torn one
        assert ok == "False" and "set_process_name" in cmdline
