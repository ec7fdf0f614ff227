"""`boxlite cp`: docker-cp semantics between the host and a box, in both directions.

The rules (docker's, for either direction; SRC and DST are the two paths):

- SRC is a file (or a symlink, not followed without -L): DST an existing directory
  gets SRC's base name inside it; otherwise DST names the file (an existing file is
  replaced). A DST ending in `/` must be an existing directory.
- SRC is a directory: DST an existing directory gets a copy of SRC inside it (or,
  with `SRC/.`, SRC's contents); DST missing is created with SRC's contents; DST an
  existing file is an error.
- `-` as SRC reads a tar from stdin and extracts it into DST (a directory); `-` as
  DST writes a tar of SRC to stdout.
- `SRC/` and `SRC/.` follow a symlink SRC to its directory; a DST that is a symlink
  (in the box or on the host) stands for what it points to: the copy lands there.

Planning (`plan_copy`) is pure: from what SRC and DST are, it gives the directory
to extract into and the name of the top entry of the tar stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import posixpath
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from boxlite_cli.errors import (
    AgentError,
    Conflict,
    NoSuchBox,
    OutputUnwritable,
    UsageError,
    VmError,
)
from boxlite_cli.fdio import write_all
from boxlite_cli.runtime.diskbase import check_disk_base
from boxlite_cli.runtime.pausing import reading_through_guest, refuse_paused
from boxlite_cli.runtime.runtime import SHIM_EXIT_WAIT_S, Runtime, boot_timeout_s
from boxlite_cli.runtime.volumes import vm_shares
from boxlite_cli.shim.vmspec import Launch
from boxlite_cli.state.records import BoxState, Status
from boxlite_cli.transfer.extract import extract_tar
from boxlite_cli.transfer.tarwrite import read_tar_chunks, rechunk, tar_path
from boxlite_cli.vmm.base import NET_NONE, VmSpec

if TYPE_CHECKING:
    from boxlite_cli.agent.client import AgentClient

Warn = Callable[[str], None]


def _no_warn(_: str) -> None:
    pass

STREAM = "-"


class Kind(Enum):
    MISSING = "missing"
    DIR = "dir"
    OTHER = "other"  # a file, a symlink not followed, a device...


@dataclass(frozen=True)
class CpArgs:
    """A parsed `cp SRC DST`: exactly one side is in a box."""

    box: str
    box_path: str
    host_path: str  # "-" for a tar stream on stdin/stdout
    to_box: bool


def split_box_arg(arg: str) -> tuple[str | None, str]:
    """`BOX:PATH` → (box, path); a local path → (None, path). docker's rule: an absolute
    path, one without a colon, or one whose part before the colon starts with `.` is
    local."""
    if arg.startswith("/") or ":" not in arg:
        return None, arg
    box, path = arg.split(":", 1)
    if box.startswith("."):
        return None, arg
    return box, path


def parse_cp_args(src: str, dst: str) -> CpArgs:
    if not src or not dst:
        raise UsageError("cp: source and destination must not be empty")
    src_box, src_path = split_box_arg(src)
    dst_box, dst_path = split_box_arg(dst)
    if src_box is not None and dst_box is not None:
        raise UsageError("cp: copying between boxes is not supported",
                         hint="copy to the host first, then into the other box")
    if src_box is None and dst_box is None:
        raise UsageError("cp: one of SRC and DST must be BOX:PATH")
    if src_box == "" or dst_box == "":
        raise UsageError("cp: the box name before ':' is empty")
    if dst_box is not None:
        if not dst_path:
            raise UsageError(f"cp: the path in the box is empty in {dst!r}")
        if dst_path == STREAM:
            raise UsageError("cp: '-' stands for the host side only")
        return CpArgs(dst_box, box_abs(dst_path), src_path, to_box=True)
    assert src_box is not None
    if not src_path:
        raise UsageError(f"cp: the path in the box is empty in {src!r}")
    return CpArgs(src_box, box_abs(src_path), dst_path, to_box=False)


def box_abs(path: str) -> str:
    """A box path made absolute (relative ones are from `/`, as docker's), trailing
    `/` and `/.` kept: they carry meaning."""
    return path if path.startswith("/") else "/" + path


def wants_contents(path: str) -> bool:
    """`SRC/.`: copy what is in the directory, not the directory."""
    return path == "." or path.endswith("/.")


def strip_path(path: str) -> str:
    """The path without its meaningful `/` or `/.` suffix."""
    while path.endswith("/.") or (path.endswith("/") and len(path) > 1):
        path = path[:-2] if path.endswith("/.") else path[:-1]
    return path or "/"


@dataclass(frozen=True)
class Plan:
    dest_dir: str  # existing directory to extract into
    name: str  # top entry of the tar ("" = the source directory's contents)


def plan_copy(src: str, src_kind: Kind, dst: str, dst_kind: Kind, basename: str) -> Plan:
    """Where a copy of `src` to `dst` goes. `basename` is the base name of the source
    (for the copy's top entry). Raises UsageError with docker's reasons."""
    if src_kind is Kind.MISSING:
        raise UsageError(f"cp: no such file or directory: {src}")
    src_dir_form = src.endswith("/") or wants_contents(src)
    dst_dir_form = dst.endswith("/") or wants_contents(dst)
    clean_dst = strip_path(dst)
    parent = posixpath.dirname(clean_dst) or "."
    if src_kind is Kind.DIR:
        if dst_kind is Kind.OTHER:
            raise UsageError(f"cp: cannot copy a directory to a file: {dst}")
        if dst_kind is Kind.DIR:
            if wants_contents(src) or not basename:
                return Plan(clean_dst, "")
            return Plan(clean_dst, basename)
        return Plan(parent, posixpath.basename(clean_dst))
    if src_dir_form:
        raise UsageError(f"cp: not a directory: {src}")
    if dst_kind is Kind.DIR:
        return Plan(clean_dst, basename)
    if dst_dir_form:
        if dst_kind is Kind.OTHER:
            raise UsageError(f"cp: not a directory: {dst}")
        raise UsageError(f"cp: the destination directory {dst} does not exist")
    return Plan(parent, posixpath.basename(clean_dst))


def kind_of_mode(mode: int) -> Kind:
    return Kind.DIR if stat.S_ISDIR(mode) else Kind.OTHER


def host_kind(path: str, follow: bool = True) -> Kind:
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return Kind.MISSING
    return kind_of_mode(st.st_mode)


def follows_top(path: str) -> bool:
    """`SRC/` and `SRC/.` name the directory a symlink SRC points to (the shell's and
    docker's reading), where a bare SRC is the link itself."""
    return path.endswith("/") or wants_contents(path)


def host_source(path: str, follow: bool) -> tuple[str, Kind]:
    """The host source of a copy in: its (stripped) path and what it is. A trailing `/`
    or `/.` follows a symlink to a directory, like the shell."""
    clean = strip_path(path) if path not in ("/", "") else "/"
    if follows_top(path):
        follow = True
    kind = host_kind(clean, follow=follow or clean == "/")
    return clean, kind


def host_destination(path: str) -> tuple[str, Kind]:
    """A host destination: symlinks in it are the user's own and are followed."""
    clean = strip_path(path)
    kind = host_kind(clean)
    if kind is Kind.MISSING:
        parent = os.path.dirname(os.path.abspath(clean))
        if host_kind(parent) is not Kind.DIR:
            raise UsageError(f"cp: the destination's directory {parent} does not exist")
    return clean, kind


def own_link_followed(path: str) -> str:
    """A host destination that is the user's own symlink stands for what it points to
    (docker's too), so the copy lands there and does not replace the link; a device, a
    FIFO or a socket there is refused (a copy would replace it by a file)."""
    clean = strip_path(path)
    target = os.path.realpath(clean) if os.path.islink(clean) else clean
    with contextlib.suppress(FileNotFoundError):
        mode = os.stat(target).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise UsageError(f"cp: {path} is not a regular file or a directory",
                             hint="to write the copy's tar stream to standard output, "
                                  "give - as the destination")
    return target + path[len(clean):] if target != clean else path  # (its / or /. kept)


def check_box_parent(plan: Plan, dst_kind: Kind, stat_kind: Kind, dst: str) -> None:
    """A missing box destination needs an existing parent directory."""
    if dst_kind is Kind.MISSING and stat_kind is not Kind.DIR:
        if stat_kind is Kind.MISSING:
            raise UsageError(f"cp: the destination's directory {plan.dest_dir} does not "
                             f"exist in the box (for {dst})")
        raise UsageError(f"cp: {plan.dest_dir} is not a directory in the box (for {dst})")


# doing it ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyOptions:
    follow_link: bool = False  # -L
    archive: bool = False  # -a: keep uid/gid


@contextlib.contextmanager
def box_agent(rt: Runtime, ref: str) -> Iterator[AgentClient]:
    """The agent of a box for a copy: a running box's own, or that of a maintenance
    start (the VM booted without the main process, gone afterwards, the box's state
    untouched) for a created or exited box."""
    from boxlite_cli.agent.client import AgentClient

    box_id = rt.resolve(ref)
    state = rt.get(box_id)
    if state.status == Status.RUNNING:
        with reading_through_guest(rt.files(box_id).dir):  # (no pause under it)
            refuse_paused(rt.get(box_id), "copy files")
            client = AgentClient.connect(f"unix:{rt.files(box_id).agent_socket}")
            try:
                yield client
            except AgentError:
                ended = _ended_under_it(rt, state)
                if ended is None:
                    raise
                raise ended from None
            finally:
                client.close()
        return
    if state.status not in (Status.CREATED, Status.EXITED):
        raise Conflict(f"box {state.name} is {state.status.value}: try again in a moment")
    with maintenance_start(rt, box_id) as client:
        yield client


ENDED_WAIT_S = 3.0  # for a box whose guest went away to show as stopped or removed


def _ended_under_it(rt: Runtime, state: BoxState) -> Conflict | None:
    """Why the guest a copy read went away: the box was removed or stopped under it (a
    Conflict that says so); None when it still runs."""
    deadline = time.monotonic() + ENDED_WAIT_S
    while True:  # (an rm -f stops the box first: its removal comes a moment later)
        try:
            now = rt.get(state.id)
        except NoSuchBox:
            return Conflict(f"box {state.name} was removed during the copy")
        if time.monotonic() >= deadline:
            if now.status != Status.RUNNING or now.started_at != state.started_at:
                return Conflict(f"box {state.name} stopped during the copy")
            return None
        time.sleep(0.1)


@contextlib.contextmanager
def maintenance_start(rt: Runtime, box_id: str) -> Iterator[AgentClient]:
    """Boot a stopped box's VM without its main process, holding the box's lock (a
    `start` meanwhile waits), and power it off when done."""
    from boxlite_cli.agent.client import AgentClient

    files = rt.files(box_id)
    payload = rt.payload()
    with rt.boxes.lock(box_id, timeout=60):
        state = rt.observe(rt.boxes.read(box_id))
        check_disk_base(state)
        if state.status not in (Status.CREATED, Status.EXITED):
            raise Conflict(f"box {state.name} is {state.status.value}: try again in a moment")
        accel = rt.choose_accel(state.config.accel, payload)
        shares, guest_volumes = vm_shares(files.dir, rt.volumes, state.config.mounts)
        driver, vm = rt.choose_vm(state, VmSpec(
            kernel=payload.kernel, initrd=payload.initrd, agent_root=payload.agent_root,
            rootfs_disk=files.rootfs_disk, console_log=files.dir / "maintenance.log",
            agent_socket=files.vm_socket, control_socket=files.control_socket,
            cpus=state.config.cpus, memory_mib=state.config.memory_mib, accel=accel,
            network=NET_NONE, shares=shares), payload)
        launch = Launch(
            driver=driver,
            vm=vm,
            boot_timeout_s=boot_timeout_s(), volumes=guest_volumes, maintenance=True)
        launch.save(files.dir / "vm.json")
        # (the mark the box's last stop left would stop this VM as it boots; a stop from
        # now on marks it again)
        files.stop_requested.unlink(missing_ok=True)
        read_fd, write_fd = os.pipe()
        hold_r, hold_w = os.pipe()
        try:
            with open(files.shim_log, "ab") as log:
                shim = subprocess.Popen(
                    [sys.executable, "-m", "boxlite_cli.shim", str(files.dir), str(write_fd),
                     str(hold_r)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    pass_fds=(write_fd, hold_r), start_new_session=True, close_fds=True)
        finally:
            os.close(write_fd)
            os.close(hold_r)
        try:
            try:
                line, _ = rt._read_ready(read_fd, boot_timeout_s() + 30, files)
            finally:
                os.close(read_fd)
            message = json.loads(line) if line else {"ok": False, "error": "the shim exited"}
            if not message.get("ok"):
                console = files.dir / "maintenance.log"  # (gone with a box removed meanwhile)
                raise VmError("could not boot the stopped box to reach its disk: "
                              f"{message.get('error')}",
                              hint=f"the VM console log is {console}" if console.exists()
                              else None)
            client = AgentClient.connect(f"unix:{files.agent_socket}")
            try:
                yield client
            finally:
                client.close()
        finally:
            os.close(hold_w)  # the shim powers the VM off
            try:
                shim.wait(SHIM_EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                shim.kill()
                shim.wait()


def _box_kind(client: AgentClient, path: str, follow: bool) -> tuple[Kind, str]:
    info = client.stat(path, follow_link=follow)
    return (kind_of_mode(info.mode) if info.exists else Kind.MISSING), info.name


LINKS_MAX = 40  # symlinks followed in a row, at most (the kernel's ELOOP limit)


def box_link_followed(client: AgentClient, path: str) -> str:
    """A box destination that is a symlink stands for what it points to (docker's cp:
    "if the destination is a symbolic link, we should evaluate it"), so the copy lands
    there, even where nothing is yet, and does not replace the link."""
    if follows_top(path):
        return path  # (its `/` resolves it already)
    for _ in range(LINKS_MAX):
        info = client.stat(path, follow_link=False)
        if not (info.exists and stat.S_ISLNK(info.mode)):
            return path
        path = posixpath.normpath(posixpath.join(posixpath.dirname(path), info.link_target))
    return path  # (a loop: the copy says what it finds there)


def copy_to_box(rt: Runtime, args: CpArgs, opts: CopyOptions, stdin_fd: int = 0,
                warn: Warn = _no_warn) -> None:
    """Host path (or a tar on stdin) → box."""
    if args.host_path == STREAM:
        with box_agent(rt, args.box) as client:
            kind, _ = _box_kind(client, strip_path(args.box_path), True)
            if kind is not Kind.DIR:
                raise UsageError(f"cp: {args.box_path} must be a directory in the box to "
                                 "extract a tar stream into it")
            client.copy_in(strip_path(args.box_path), opts.archive, read_tar_chunks(stdin_fd))
        return
    src, src_kind = host_source(args.host_path, opts.follow_link)
    if src_kind is Kind.MISSING:
        raise UsageError(f"cp: no such file or directory: {args.host_path}")
    basename = os.path.basename(src)
    with box_agent(rt, args.box) as client:
        args = dataclasses.replace(args, box_path=box_link_followed(client, args.box_path))
        dst = strip_path(args.box_path)
        dst_kind, _ = _box_kind(client, dst, True)
        plan = plan_copy(args.host_path, src_kind, args.box_path, dst_kind, basename)
        if dst_kind is Kind.MISSING:
            parent_kind, _ = _box_kind(client, plan.dest_dir, True)
            check_box_parent(plan, dst_kind, parent_kind, args.box_path)
        follow = opts.follow_link or follows_top(args.host_path)
        pieces = tar_path(src, plan.name, follow=follow, warn=warn)
        client.copy_in(plan.dest_dir, opts.archive, rechunk(pieces))


def copy_from_box(rt: Runtime, args: CpArgs, opts: CopyOptions, stdout_fd: int = 1,
                  warn: Warn = _no_warn) -> None:
    """Box → host path (or a tar on stdout)."""
    src = strip_path(args.box_path)
    dst_kind = Kind.MISSING
    if args.host_path != STREAM:
        args = dataclasses.replace(args, host_path=own_link_followed(args.host_path))
        _, dst_kind = host_destination(args.host_path)  # host mistakes before any boot
    with box_agent(rt, args.box) as client:
        follow = opts.follow_link or (follows_top(args.box_path) and src != "/")
        src_kind, name = _box_kind(client, src, follow)
        if src_kind is Kind.MISSING:
            raise UsageError(f"cp: no such file or directory in the box: {args.box_path}")
        if args.host_path == STREAM:
            top = "" if (wants_contents(args.box_path) or src == "/") else name
            for chunk in client.copy_out(src, follow, top):
                try:
                    if not write_all(stdout_fd, chunk):
                        return
                except OSError as e:
                    raise OutputUnwritable(e) from e
            return
        plan = plan_copy(args.box_path, src_kind, args.host_path, dst_kind, name)
        if dst_kind is Kind.MISSING and not os.path.isdir(plan.dest_dir):
            raise UsageError(f"cp: the destination's directory {plan.dest_dir} does not exist")
        dest_dir = os.path.realpath(plan.dest_dir)
        extract_tar(client.copy_out(src, follow, plan.name, sparse=True), dest_dir,
                    keep_owner=opts.archive, warn=warn, top=plan.name)
