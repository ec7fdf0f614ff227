"""docker flags boxlite does not take, and why: said in place of click's "No such
option", whose nearest names mislead (docker's --memory-swap is no --memory here)."""

from __future__ import annotations

_OWN_VM = "a box is a VM of its own: it shares no namespace with the host or another box"
_NO_DEVICES = "a box is a VM: the host's devices are not in it"
_RAM = ("-m is the RAM of the box's VM, which its kernel manages: there is no swap, soft "
        "limit or OOM setting beside it")
_CPU = "use --cpus (the VM's vCPUs; a fraction limits its processes' CPU time)"
_OWN_NET = ("a box's network is its own (10.0.2.15 behind the host's user-mode NAT): "
            "boxes reach each other only through published ports (-p)")
_DISK = "a box's disk is its VM's: use --disk-size for its size"

# (a verb or "*", the flag) -> why boxlite does not take it
REASONS: dict[tuple[str, str], str] = {
    **{("*", flag): _OWN_VM for flag in ("--pid", "--ipc", "--uts", "--userns", "--cgroupns",
                                         "--cgroup-parent")},
    **{("*", flag): _NO_DEVICES for flag in ("--device", "--gpus", "--device-cgroup-rule")},
    **{("*", flag): _RAM for flag in ("--memory-swap", "--memory-reservation",
                                      "--memory-swappiness", "--oom-kill-disable",
                                      "--oom-score-adj", "--kernel-memory")},
    **{("*", flag): _CPU for flag in ("--cpuset-cpus", "--cpuset-mems", "--cpu-shares",
                                      "--cpu-quota", "--cpu-period", "--cpu-rt-period",
                                      "--cpu-rt-runtime")},
    **{("*", flag): _OWN_NET for flag in ("--ip", "--ip6", "--link", "--network-alias",
                                          "--mac-address", "--link-local-ip")},
    **{("*", flag): _DISK for flag in ("--storage-opt", "--blkio-weight",
                                       "--blkio-weight-device", "--device-read-bps",
                                       "--device-write-bps", "--device-read-iops",
                                       "--device-write-iops")},
    ("*", "--volumes-from"): "give each box the named volumes it shares (-v NAME:/path)",
    ("*", "--runtime"): "a box's runtime is its VM (--vmm picks QEMU or cloud-hypervisor)",
    ("*", "--isolation"): "every box is isolated by a VM of its own",
    ("stats", "--all"): "stats lists the running boxes; name a stopped one to see it (zeros)",
    ("stats", "-a"): "stats lists the running boxes; name a stopped one to see it (zeros)",
    ("system df", "-v"): "use boxlite ps -a -s, images and volume ls for each one's size",
    ("system df", "--verbose"): "use boxlite ps -a -s, images and volume ls for each one's size",
}


def docker_flag_reason(command: str, flag: str) -> str | None:
    """Why `command` (`run`, `system df`) does not take docker's `flag`, if it is one."""
    return REASONS.get((command, flag)) or REASONS.get(("*", flag))
