"""docker's `--tmpfs PATH[:OPTIONS]`: parsing and checking, before anything is made.

OPTIONS are docker's (comma-separated): `size=64m`, `mode=1770`, `uid=N`, `gid=N`,
`ro`/`rw`, `exec`/`noexec`, `suid`/`nosuid`, `dev`/`nodev`. Docker's defaults hold:
noexec, nosuid, nodev, mode 1777, no size (the kernel's: half of the VM's RAM).
Of the box's kernel file systems, /dev/shm alone may get one, as docker takes it (it wins
over `--shm-size`, which sizes the box's own).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.spec import parse_size
from boxlite_cli.runtime.volumes import KERNEL_MOUNTS
from boxlite_cli.shim.vmspec import GuestTmpfs

MAX_TMPFS = 16  # mounts per box
SHM = "/dev/shm"  # under /dev, yet taken: a tmpfs over the box's 64 MiB one
MAX_SIZE = 1 << 40
MAX_ID = (1 << 32) - 2
FLAG_PAIRS = {"ro": ("readonly", True), "rw": ("readonly", False),
              "exec": ("exec_", True), "noexec": ("exec_", False),
              "suid": ("suid", True), "nosuid": ("suid", False),
              "dev": ("dev", True), "nodev": ("dev", False)}


def _number(value: str, spec: str, what: str, base: int = 10, top: int = MAX_ID) -> int:
    try:
        number = int(value, base)
    except ValueError:
        number = -1
    if not 0 <= number <= top:
        raise UsageError(f"invalid --tmpfs {spec!r}: {what} {value!r} is not valid")
    return number


def parse_tmpfs(spec: str) -> GuestTmpfs:
    """One `--tmpfs` value; UsageError naming it when malformed."""
    target, _, options = spec.partition(":")
    if not target.startswith("/"):
        raise UsageError(f"invalid --tmpfs {spec!r}: the path in the box must be absolute")
    target = posixpath.normpath(target)
    if target in ("/", "//"):
        raise UsageError(f"invalid --tmpfs {spec!r}: cannot mount over the box's root directory")
    if "\0" in target:
        raise UsageError(f"invalid --tmpfs {spec!r}: NUL in the path")
    kernel = next((k for k in KERNEL_MOUNTS if target == k or target.startswith(k + "/")), None)
    if kernel is not None and target != SHM:  # (docker's way to size /dev/shm, too)
        raise UsageError(f"invalid --tmpfs {spec!r}: cannot mount over {kernel}: the box's "
                         "kernel file systems are there")
    fields: dict[str, object] = {}
    for option in (o for o in options.split(",") if o) if options else ():
        key, eq, value = option.partition("=")
        if key in FLAG_PAIRS and not eq:
            name, flag = FLAG_PAIRS[key]
            fields[name] = flag
        elif key == "size" and eq:
            try:
                size = parse_size(value, "size")
            except UsageError:
                size = -1
            if not 0 <= size <= MAX_SIZE:
                raise UsageError(f"invalid --tmpfs {spec!r}: size {value!r} is not valid")
            fields["size_bytes"] = size  # (0: the kernel's default, as no size)
        elif key == "mode" and eq:
            fields["mode"] = _number(value, spec, "mode", base=8, top=0o7777)
        elif key in ("uid", "gid") and eq:
            fields[key] = _number(value, spec, key)
        else:
            raise UsageError(f"invalid --tmpfs {spec!r}: unknown option {option!r}",
                             hint="options: size=, mode=, uid=, gid=, ro, rw, exec, noexec, "
                                  "suid, nosuid, dev, nodev")
    return GuestTmpfs(target=target, **fields)  # type: ignore[arg-type]


def parse_shm_size(size: str | None) -> int:
    """docker's `--shm-size SIZE` in bytes (0: not given, /dev/shm's 64 MiB)."""
    if size is None:
        return 0
    try:
        size_bytes = parse_size(size, "--shm-size")
    except UsageError:
        size_bytes = -1
    if not 0 < size_bytes <= MAX_SIZE:
        raise UsageError(f"invalid --shm-size {size!r}: give a size such as 64m or 2g")
    return size_bytes


def box_tmpfs(specs: Iterable[str], volume_targets: Iterable[str],
              shm_size: int = 0) -> list[GuestTmpfs]:
    """What a box mounts: its --tmpfs (checked_tmpfs's), and its /dev/shm at --shm-size
    unless a --tmpfs of /dev/shm is given (which wins, as docker's)."""
    mounts = check_tmpfs(specs, volume_targets)
    if shm_size and not any(m.target == SHM for m in mounts):
        mounts.append(GuestTmpfs(SHM, size_bytes=shm_size))
    return mounts


def check_tmpfs(specs: Iterable[str], volume_targets: Iterable[str]) -> list[GuestTmpfs]:
    """Every --tmpfs of a box parsed; a path given twice, or also a volume's, is refused."""
    parsed = [parse_tmpfs(spec) for spec in specs]
    if len(parsed) > MAX_TMPFS:
        raise UsageError(f"too many --tmpfs: a box takes at most {MAX_TMPFS}")
    seen = set(volume_targets)
    for mount in parsed:
        if mount.target in seen:
            raise UsageError(f"duplicate mount point {mount.target} (--tmpfs and -v, or "
                             "--tmpfs twice)")
        seen.add(mount.target)
    return parsed
