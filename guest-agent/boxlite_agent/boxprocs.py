"""The box's processes as `ps` in the box would list them (boxlite top), read from the
guest's own /proc: the box cannot change what it says (its /proc is its own mount)."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from boxlite_agent.resolve import read_file_in_root
from boxlite_agent.users import parse_passwd

NS_GET_PARENT = 0xB702  # _IO(0xb7, 0x2): the parent of a PID namespace, as an fd
MAX_NESTING = 32  # (the kernel's most for PID namespaces)
CMDLINE_MAX = 8192  # of one process's argv, at most
CMDLINES_MAX = 8 << 20  # of all argvs (the answer is one gRPC message of at most 16 MiB)
PROCESSES_MAX = 65536  # processes listed at most (the default pids limit is 4096)


@dataclass
class BoxProcess:
    pid: int  # in the box's PID namespace
    ppid: int  # 0: the parent is not the box's (the box's init)
    uid: int
    state: str
    cpu_s: float
    rss_bytes: int
    started: float  # Unix time
    threads: int
    name: str  # comm
    argv: list[str] = field(default_factory=list)
    argv_cut: bool = False  # only the first CMDLINE_MAX bytes of it, or none (the budget)
    user: str = ""


class ProcStat(NamedTuple):
    """What boxlite top shows of /proc/PID/stat."""

    name: str
    state: str
    ppid: int
    cpu_ticks: int  # utime + stime
    threads: int
    start_ticks: int  # after boot
    rss_pages: int


def parse_stat(text: str) -> ProcStat | None:
    """/proc/PID/stat, or None when malformed. The name may hold spaces and parentheses:
    it ends at the last ')'."""
    start, end = text.find("("), text.rfind(")")
    if start < 0 or end < start:
        return None
    rest = text[end + 2:].split()
    if len(rest) < 22:
        return None
    try:
        return ProcStat(text[start + 1:end], rest[0], int(rest[1]), int(rest[11]) + int(rest[12]),
                        int(rest[17]), int(rest[19]), int(rest[21]))
    except ValueError:
        return None


def split_cmdline(raw: bytes) -> list[str]:
    """/proc/PID/cmdline → argv (a process that rewrote its own may end without a NUL;
    a kernel thread's is empty)."""
    raw = raw[:-1] if raw.endswith(b"\0") else raw
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")] if raw else []


def ns_pids(status: str) -> tuple[list[int], int] | None:
    """(the PIDs from the outermost namespace to its own, real uid) from /proc/PID/status."""
    pids: list[int] | None = None
    uid = None
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            pids = [int(x) for x in line.split()[1:]]
        elif line.startswith("Uid:"):
            uid = int(line.split()[1])
    return None if not pids or uid is None else (pids, uid)


def _within(ns_path: str, namespace: int) -> bool:
    """PID namespace file `ns_path` is `namespace` or nested in it (NS_GET_PARENT)."""
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for _ in range(MAX_NESTING + 1):
            if os.fstat(fd).st_ino == namespace:
                return True
            try:
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
            except OSError:  # (EPERM: above our own; the outermost has none)
                return False
            os.close(fd)
            fd = parent
        return False
    finally:
        os.close(fd)


def _read(path: str, limit: int = 16384) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _boot_time(proc: str) -> float:
    for line in _read(os.path.join(proc, "stat"), 1 << 20).decode().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def box_processes(namespace: int, root: str | None = None, proc: str = "/proc") -> list[BoxProcess]:
    """The processes in PID namespace `namespace` (an inode) and in those nested in it
    (a box's `unshare --pid`), by their PIDs in `namespace`, sorted; user names from
    `root`'s /etc/passwd."""
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    boot = _boot_time(proc)
    # guest pid -> (process, guest ppid, its PIDs from the outermost namespace in)
    found: dict[int, tuple[BoxProcess, int, list[int]]] = {}
    level: int | None = None  # where `namespace` is in an NSpid list
    budget = CMDLINES_MAX  # beyond it, processes are listed by their names only
    for entry in os.listdir(proc):
        if not entry.isdigit() or len(found) >= PROCESSES_MAX:
            continue
        base = os.path.join(proc, entry)
        try:
            ns_path = os.path.join(base, "ns", "pid")
            own = os.stat(ns_path).st_ino == namespace
            ids = ns_pids(_read(os.path.join(base, "status")).decode("utf-8", "replace"))
            if ids is None or not (own or (len(ids[0]) > 1 and _within(ns_path, namespace))):
                continue
            stat = parse_stat(_read(os.path.join(base, "stat")).decode("utf-8", "replace"))
            cmdline = _read(os.path.join(base, "cmdline"), CMDLINE_MAX) if budget > 0 else b""
        except (OSError, ValueError):  # (gone meanwhile)
            continue
        if stat is None:
            continue
        if own:
            level = len(ids[0]) - 1
        budget -= len(cmdline)
        found[int(entry)] = (BoxProcess(
            pid=0, ppid=0, uid=ids[1], state=stat.state, cpu_s=stat.cpu_ticks / tick,
            rss_bytes=stat.rss_pages * page, started=boot + stat.start_ticks / tick,
            threads=stat.threads, name=stat.name, argv=split_cmdline(cmdline),
            argv_cut=(budget <= 0 and not cmdline) or len(cmdline) >= CMDLINE_MAX),
            stat.ppid, ids[0])
    if level is None:
        return []  # (nothing left in the namespace itself)
    for process, _, pids in found.values():
        process.pid = pids[level]
    for process, guest_ppid, _ in found.values():
        parent = found.get(guest_ppid)
        process.ppid = parent[0].pid if parent else 0
    names = _user_names(root) if root else {}
    listed = sorted((p for p, _, _ in found.values()), key=lambda p: p.pid)
    for process in listed:
        process.user = names.get(process.uid, "")
    return listed


def _user_names(root: str) -> dict[int, str]:
    try:
        raw = read_file_in_root(root, "/etc/passwd") or b""
    except OSError:
        return {}
    names: dict[int, str] = {}
    for entry in parse_passwd(raw.decode("utf-8", "replace")):
        names.setdefault(entry.uid, entry.name)
    return names
