"""Linux capabilities of a box's processes: `--cap-add` and `--cap-drop`, as docker takes
them (`NET_ADMIN`, `cap_net_admin`, `ALL`), and the mask the guest drops.

A box's processes start with every capability of the guest (a root process in the box
has them all: the VM is the boundary, not the capability set). `--cap-drop` takes
capabilities from the bounding set of every process started in the box, its main
process and each exec (`ALL`: every one); `--cap-add` gives back ones `--cap-drop`
took (after `--cap-drop ALL`, the few a program needs). A root process then has
exactly what is left; other users get no capability from a file beyond it either.
"""

from __future__ import annotations

from collections.abc import Iterable

from boxlite_cli.errors import UsageError

ALL = "ALL"
# Capability numbers (linux/capability.h, as of Linux 6.x).
CAPABILITIES: dict[str, int] = {
    name: number for number, name in enumerate((
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
        "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
        "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
        "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
        "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
        "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ))
}
ALL_MASK = (1 << len(CAPABILITIES)) - 1
MAX_NAMES = 64  # per option: more is a mistake (there are 41), or a hostile archive


def normalize(names: Iterable[str], option: str) -> list[str]:
    """Capability names as a box keeps them: upper case, no CAP_ prefix, each once, in
    the order given; UsageError naming `option` for an unknown one."""
    out: list[str] = []
    for raw in names:
        name = raw.strip().upper()
        name = name.removeprefix("CAP_")
        if name != ALL and name not in CAPABILITIES:
            raise UsageError(f"invalid {option} {raw!r}: no such capability",
                             hint="a name such as NET_ADMIN or SYS_PTRACE (CAP_ and case "
                                  "optional), or ALL")
        if name not in out:
            out.append(name)
        if len(out) > MAX_NAMES:
            raise UsageError(f"too many {option} capabilities")
    return out


def drop_mask(cap_add: Iterable[str], cap_drop: Iterable[str]) -> int:
    """The capabilities taken from the box's processes (bit N: capability N), from
    normalized names, as docker combines them: --cap-add ALL keeps all but the ones
    --cap-drop names; --cap-drop ALL keeps only what --cap-add names; otherwise what
    --cap-drop takes, less what --cap-add gives back."""
    drop = set(cap_drop)
    add = set(cap_add)
    named = sum(1 << CAPABILITIES[n] for n in drop if n != ALL)
    if ALL in add:
        return named
    mask = ALL_MASK if ALL in drop else named
    for name in add:
        mask &= ~(1 << CAPABILITIES[name])
    return mask
