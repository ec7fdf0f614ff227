"""PID 1 of the box VM.

Started by the initramfs (``switch_root ... python3 -m boxlite_agent.init``) with
/proc, /sys, /dev, /run and /tmp mounted. It mounts devpts and /dev/shm, forks the
agent (the child imports the server itself: no second interpreter start-up), then
reaps every process that ends up as its child. When the agent dies, it logs one line
to the console and powers the VM off.

Keep the imports here minimal: they are paid before the agent starts.
"""

from __future__ import annotations

import os
import signal
import sys

from boxlite_agent import console, syscalls
from boxlite_agent.procname import set_process_name

# What `ps` and `pkill` in a box see of PID 1 and the agent (procname.py).
INIT_NAME = "boxlite-init"
AGENT_NAME = "boxlite-agent"

EARLY_MOUNTS = (
    ("/dev/pts", "devpts", "devpts", syscalls.MS_NOSUID | syscalls.MS_NOEXEC, "ptmxmode=0666,mode=620,gid=5"),
    ("/dev/shm", "tmpfs", "shm", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=1777"),
)


def _mounted_points() -> set[str]:
    try:
        with open("/proc/self/mountinfo") as f:
            return {line.split(" ")[4] for line in f if line.count(" ") >= 5}
    except OSError:
        return set()


def early_mounts() -> None:
    present = _mounted_points()
    for target, fstype, source, flags, data in EARLY_MOUNTS:
        if target in present:
            continue
        try:
            os.makedirs(target, exist_ok=True)
            syscalls.mount(source, target, fstype, flags, data)
        except OSError as e:
            console.log(f"boxlite-init: {e}")


def _run_agent() -> None:
    """The forked child: become the agent."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        set_process_name(AGENT_NAME)
        from boxlite_agent import server

        code = server.main([])
    except BaseException as e:  # the child must end in os._exit
        console.log(f"boxlite-agent: crashed: {type(e).__name__}: {e}")
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def reap_until(pid: int) -> int:
    """Reap every child (orphans included) until ``pid`` exits; its wait status."""
    while True:
        try:
            child, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if child == pid:
            return status


def main() -> None:
    # grpc's fork handlers would pause its threads around every fork of an exec
    # (and log about it); the agent never uses grpc in a forked child.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # The kernel does not deliver unhandled signals to PID 1; ignore the one Python
    # would turn into KeyboardInterrupt (ctrl-alt-del sends SIGINT).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_process_name(INIT_NAME)  # (not `python3`: see procname.py)
    try:
        early_mounts()
        pid = os.fork()
        if pid == 0:
            _run_agent()
        status = reap_until(pid)
        console.log(f"boxlite-init: the agent exited ({_describe(status)}); powering off")
    except BaseException as e:  # PID 1 must never exit
        console.log(f"boxlite-init: {type(e).__name__}: {e}; powering off")
    syscalls.power_off()


if __name__ == "__main__":
    main()
