"""`-v` on run/create: parsing, resolving to mounts, and the VM's 9p shares at start.

Grammar (docker's, Linux): `BOXPATH` (anonymous volume), `SRC:BOXPATH[:ro|rw]`
where SRC is an absolute host path (a bind) or a volume name (created on demand).

Choices that differ from docker, on purpose:
- a missing host path is refused (docker creates it, root-owned, which is a classic
  foot-gun); relative host paths are refused unless they are volume names;
- a single-file bind is shared through a per-box directory holding a hard link to
  the file, so the guest sees that file and nothing else of its directory; a file on
  another file system than the boxlite home cannot be linked and is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import secrets
import shutil
import stat as st_mod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from boxlite_cli.errors import Conflict, UsageError, VmError
from boxlite_cli.shim.vmspec import GuestVolume
from boxlite_cli.state.volumes import BIND, NAME_RE, VOLUME, Mount, VolumeInfo, VolumeStore
from boxlite_cli.vmm.base import Share

MODES = ("ro", "rw")
NOCOPY = "nocopy"  # a new volume is not filled from the image (docker's)
# docker's other -v options, taken and of no effect here: SELinux relabelling (no SELinux
# in a box's VM), mount propagation and macOS consistency (a 9p share has neither)
IGNORED_OPTIONS = ("z", "Z", "shared", "slave", "private", "rshared", "rslave", "rprivate",
                   "consistent", "cached", "delegated")
MAX_VOLUMES = 16  # virtio-mmio slots of QEMU microvm, less the box's own devices
FILE_SHARES = "volfiles"


@dataclass(frozen=True)
class VolumeRequest:
    """A parsed `-v`: kind is "bind", "volume" or "anonymous"."""

    kind: str
    source: str
    target: str
    readonly: bool = False
    nocopy: bool = False
    # a host directory made when it is missing (docker's -v does; --mount refuses)
    make_missing: bool = field(default=False, compare=False)


KERNEL_MOUNTS = ("/proc", "/sys", "/dev")  # what the guest agent mounts in every box


def parse_volume_spec(spec: str) -> VolumeRequest:
    """One `-v` value → what it asks for; UsageError (with the spec) when malformed."""
    def bad(why: str) -> UsageError:
        return UsageError(f"invalid volume {spec!r}: {why}")

    if not spec:
        raise bad("it is empty")
    parts = spec.split(":")
    if len(parts) > 3:
        raise bad("too many ':' (use SRC:BOXPATH[:ro|rw])")
    if any(p == "" for p in parts):
        raise bad("an empty part (use SRC:BOXPATH[:ro|rw])")
    readonly = nocopy = False
    if len(parts) == 3:
        options = parts[2].split(",")
        for option in options:
            if option not in (*MODES, NOCOPY, *IGNORED_OPTIONS):
                raise bad(f"unknown option {option!r} (use ro, rw or nocopy; docker's z, "
                          "Z and propagation options are taken too)")
        if (len({o for o in options if o in MODES}) > 1 or len(options) != len(set(options))
                or {"z", "Z"} <= set(options)):
            raise bad(f"options {parts[2]!r} repeat or conflict")
        readonly = "ro" in options
        nocopy = NOCOPY in options
    target = parts[-1] if len(parts) == 1 else parts[1]
    if not target.startswith("/") and len(parts) == 2 and all(
            o in (*MODES, NOCOPY, *IGNORED_OPTIONS) for o in parts[1].split(",")):
        raise bad("the path in the box is missing")
    source = parts[0] if len(parts) > 1 else ""
    if source in (".", "..") or source.startswith(("./", "../")):
        source = os.path.abspath(source)  # (docker's since 23: relative to here)
    return volume_request(source, target, readonly, nocopy, bad, make_missing=True)


def volume_request(source: str, target: str, readonly: bool, nocopy: bool,
                   bad: Callable[[str], UsageError], make_missing: bool = False) -> VolumeRequest:
    """The checked request for SOURCE (empty: anonymous; a host path; a volume name) at
    TARGET, for `-v` and `--mount` alike; `bad(why)` makes the error; `make_missing`: a
    host directory that is not there is made when the box is."""
    if not target.startswith("/"):
        raise bad(f"the path in the box {target!r} is not absolute")
    target = posixpath.normpath(target)
    if target in ("/", "//"):
        raise bad("cannot mount over the box's root directory")
    kernel = next((k for k in KERNEL_MOUNTS if target == k or target.startswith(k + "/")), None)
    if kernel is not None:  # (the guest mounts its own there: a volume would not be seen)
        raise bad(f"cannot mount over {kernel}: the box's kernel file systems are there")
    if not source:
        return VolumeRequest("anonymous", "", target, readonly)
    if source.startswith("/"):
        if nocopy:
            raise bad("nocopy is for volumes (a host directory is never filled from the image)")
        return VolumeRequest(BIND, os.path.normpath(source), target, readonly,
                             make_missing=make_missing)
    if len(source) == 1 and source.isalnum():
        raise bad(f"the volume name {source!r} is too short: two characters at least, as "
                  "docker's")
    if NAME_RE.match(source):
        return VolumeRequest(VOLUME, source, target, readonly, nocopy)
    raise bad(f"{source!r} is neither an absolute host path nor a volume name "
              "(letters, digits, _.-); give host directories as absolute paths, or "
              "relative ones from ./")


def parse_volume_specs(specs: Sequence[str | VolumeRequest]) -> list[VolumeRequest]:
    """`-v` specs (and `--mount`s, parsed already) → requests, each mount point once."""
    requests = [s if isinstance(s, VolumeRequest) else parse_volume_spec(s) for s in specs]
    seen: set[str] = set()
    for r in requests:
        if r.target in seen:
            raise UsageError(f"duplicate mount point {r.target} in -v")
        seen.add(r.target)
    if len(requests) > MAX_VOLUMES:
        raise UsageError(f"too many volumes ({len(requests)}): a box takes at most {MAX_VOLUMES}")
    return requests


def check_host_sources(requests: list[VolumeRequest]) -> None:
    """Every bind source must exist (or be one `-v` makes) and be a directory or a
    regular file."""
    for r in requests:
        if r.kind != BIND:
            continue
        try:
            st = os.stat(r.source)
        except FileNotFoundError:
            if os.path.islink(r.source):
                raise UsageError(f"invalid volume: the host path {r.source} is a link to "
                                 "nothing", hint="point it at a directory or a file") from None
            if r.make_missing:
                continue
            raise UsageError(f"invalid volume: the host path {r.source} does not exist",
                             hint="create it first (--mount does not make a missing one; "
                                  "-v does)") from None
        except OSError as e:
            raise UsageError(f"invalid volume: the host path {r.source}: {e.strerror}") from None
        if not (st_mod.S_ISDIR(st.st_mode) or st_mod.S_ISREG(st.st_mode)):
            raise UsageError(f"invalid volume: {r.source} is neither a directory nor a file")


def make_missing_sources(requests: list[VolumeRequest]) -> None:
    """The host directories of `-v` binds that are missing, made (with their parents,
    as docker's -v makes them; kept if the box is not made after all)."""
    for r in requests:
        if r.kind == BIND and r.make_missing and not os.path.lexists(r.source):
            try:
                os.makedirs(r.source, 0o755, exist_ok=True)
            except OSError as e:
                raise UsageError(f"invalid volume: the host path {r.source} is missing and "
                                 f"cannot be made: {e.strerror}") from None


def resolve_mounts(store: VolumeStore, requests: list[VolumeRequest]) -> tuple[list[Mount], list[str]]:
    """Mounts for a new box; named volumes are created when missing, anonymous ones
    always. Returns (mounts, names of the volumes made now) so that a failed create
    can take them back (`discard_volumes`)."""
    check_host_sources(requests)
    mounts: list[Mount] = []
    made: list[str] = []
    with store.lock():
        try:
            for r in requests:
                if r.kind == BIND:
                    mounts.append(Mount(BIND, r.source, r.target, r.readonly))
                    continue
                anonymous = r.kind == "anonymous"
                name = secrets.token_hex(32) if anonymous else r.source
                _, new = store.create(name, anonymous=anonymous)
                if new:
                    made.append(name)
                mounts.append(Mount(VOLUME, name, r.target, r.readonly, anonymous, r.nocopy))
        except BaseException:
            for name in made:
                with contextlib.suppress(Exception):
                    store.remove(name)
            raise
    return mounts, made


def discard_volumes(store: VolumeStore, names: list[str]) -> None:
    with store.lock():
        for name in names:
            with contextlib.suppress(Exception):
                store.remove(name)


def _is_empty(directory: Path) -> bool:
    with os.scandir(directory) as entries:
        return next(entries, None) is None


def vm_shares(box_dir: Path, store: VolumeStore, mounts: list[Mount]
              ) -> tuple[tuple[Share, ...], tuple[GuestVolume, ...]]:
    """The 9p shares and guest mounts of a box's mounts, at (each) start.

    A single-file bind becomes a directory `<box>/volfiles/volN/` holding a hard link
    to the file: the guest gets that one file, not its neighbours.
    """
    files_dir = box_dir / FILE_SHARES
    shutil.rmtree(files_dir, ignore_errors=True)
    shares: list[Share] = []
    guest: list[GuestVolume] = []
    for i, m in enumerate(mounts):
        tag = f"vol{i}"
        if m.kind == VOLUME:
            path = store.data_dir(m.source)
            if not path.is_dir():
                raise VmError(f"volume {m.source} (for {m.target}) is missing",
                              hint="it was removed; create it again: boxlite volume create "
                                   + m.source)
            shares.append(Share(tag, str(path), m.readonly))
            # (docker's rule: a volume still empty gets what the image has at its target,
            # unless the box asked for nocopy)
            populate = not m.readonly and not m.nocopy and _is_empty(path)
            guest.append(GuestVolume(tag, m.target, m.readonly, populate=populate))
            continue
        if os.path.isdir(m.source):
            shares.append(Share(tag, m.source, m.readonly))
            guest.append(GuestVolume(tag, m.target, m.readonly))
            continue
        if not os.path.isfile(m.source):
            raise VmError(f"the host path {m.source} (for {m.target}) does not exist any more")
        holder = files_dir / tag
        holder.mkdir(parents=True, mode=0o700)
        name = os.path.basename(m.source)
        try:
            os.link(m.source, holder / name)
        except OSError as e:
            why = ("it is on another file system than the boxlite home"
                   if e.errno == errno.EXDEV else
                   "it is not yours, and this host protects hard links to others' files "
                   "(fs.protected_hardlinks)" if e.errno == errno.EPERM else e.strerror)
            raise VmError(f"cannot share the file {m.source} with the box: {why}",
                          hint="share its directory instead (-v DIR:BOXDIR)") from None
        shares.append(Share(tag, str(holder), m.readonly))
        guest.append(GuestVolume(tag, m.target, m.readonly, name))
    return tuple(shares), tuple(guest)


def volume_users(boxes: list[tuple[str, list[Mount]]], name: str) -> list[str]:
    """Names of the boxes (name, mounts) that use volume `name`."""
    return [box for box, mounts in boxes
            if any(m.kind == VOLUME and m.source == name for m in mounts)]


def volume_filter(filters: Sequence[str], mounted: Callable[[], set[str]]
                  ) -> Callable[[VolumeInfo], bool]:
    """docker's `volume ls -f`: dangling=true|false (no box uses it), name=PART;
    `mounted()`: the names of the volumes boxes use (asked only for dangling=)."""
    from boxlite_cli.runtime.boxfilter import bool_filter, split_filter

    parts: list[str] = []
    dangling: list[bool] = []
    for item in filters:
        key, value = split_filter(item, ("dangling", "name"))
        if key == "name":
            parts.append(value)
        else:
            dangling.append(bool_filter(key, value))
    used = mounted() if dangling else set()

    def wanted(v: VolumeInfo) -> bool:
        return ((not parts or any(part in v.name for part in parts))
                and all((v.name not in used) == d for d in dangling))

    return wanted


def create_volume(store: VolumeStore, name: str | None) -> VolumeInfo:
    """`volume create [NAME]`: an existing volume is returned as is (docker)."""
    with store.lock():
        info, _ = store.create(name or secrets.token_hex(32), anonymous=not name)
        return info


def remove_volume(store: VolumeStore, users: Callable[[], list[tuple[str, list[Mount]]]],
                  name: str) -> None:
    """`volume rm NAME`: refused while a box (running or not) uses it."""
    with store.lock():
        store.get(name)
        using = volume_users(users(), name)
        if using:
            raise Conflict(f"volume {name} is in use by box {', '.join(sorted(using))}",
                           hint="remove the box first (boxlite rm)")
        store.remove(name)
