"""`boxlite clone`: thin copies of a box that share its disk up to one frozen snapshot.

The source box's disk is snapshotted (`clone-<hex>`, running or stopped), and every
clone gets its own empty qcow2 overlay on that frozen file, so clones cost nothing
until they write and never see each other's writes (nor the source's later ones).
The clones are made in a staging directory and moved into `<data>/boxes/` by rename;
a clone source cannot be removed while a clone's disk is built on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from boxlite_cli.disks.chain import qcow2_backing
from boxlite_cli.disks.qcow2 import create_overlay
from boxlite_cli.errors import BoxliteError, Conflict, NotFound, StateCorrupt, UsageError
from boxlite_cli.runtime import snapshots
from boxlite_cli.runtime.diskbase import check_disk_base
from boxlite_cli.runtime.names import random_name
from boxlite_cli.runtime.network import box_mac, network_config
from boxlite_cli.runtime.pausing import refuse_paused
from boxlite_cli.runtime.staging import clean_stale, stage
from boxlite_cli.runtime.volumes import VolumeRequest, discard_volumes, resolve_mounts
from boxlite_cli.state.atomic import write_json_atomic
from boxlite_cli.state.boxes import STATE_FILE, new_box_id, validate_name
from boxlite_cli.state.network import NetworkConfig
from boxlite_cli.state.pidfile import ProcessRecord
from boxlite_cli.state.records import BoxConfig, BoxState, Status
from boxlite_cli.state.volumes import BIND

if TYPE_CHECKING:
    from boxlite_cli.runtime.runtime import Runtime

MAX_CLONES = 64


# names and commits (shared with import) -----------------------------------------------

def check_name_free(rt: Runtime, name: str) -> None:
    """Fail early (before any work) when `name` is taken; the reservation at commit
    time is what makes it atomic."""
    validate_name(name)
    with contextlib.suppress(OSError):
        owner = os.readlink(rt.boxes.names / name)
        if rt.boxes.box_dir(owner).exists():
            raise Conflict(f'the name "{name}" is already in use by box {owner[:12]}',
                           hint="remove (or rename) that box to reuse the name, or choose another")


def clone_names(name: str | None, count: int) -> list[str]:
    """NAME, NAME-2, ... NAME-COUNT (random names without NAME)."""
    if count < 1 or count > MAX_CLONES:
        raise UsageError(f"invalid clone count {count}: use 1 to {MAX_CLONES}")
    if name is None:
        return [random_name() for _ in range(count)]
    names = [name, *(f"{name}-{i}" for i in range(2, count + 1))]
    for n in names:
        validate_name(n)
    return names


def stage_state(box_dir: Path, state: BoxState) -> None:
    """The state file of a staged box: `creating`, owned by this process (a box whose
    commit is interrupted shows as exited, like an interrupted create)."""
    state.status = Status.CREATING
    state.creator = ProcessRecord.current().to_json()
    write_json_atomic(box_dir / STATE_FILE, state.to_json())


def commit_box(rt: Runtime, staged: Path, state: BoxState) -> None:
    """Move a staged box directory into place, reserve its name and mark it created;
    on failure nothing of it is left."""
    os.rename(staged, rt.boxes.box_dir(state.id))
    try:
        rt.boxes.reserve_name(state.name, state.id)
    except BaseException:
        rt.boxes.remove_dir(state.id)
        raise
    with rt.boxes.lock(state.id):
        state.status = Status.CREATED
        state.creator = None
        rt.boxes.write(state)


def _dependent_ids(rt: Runtime, box_id: str) -> list[str]:
    """The other boxes whose disks are built on a file of this box's disks (its clones,
    or boxes made from its snapshots)."""
    own = str(rt.boxes.box_dir(box_id)) + os.sep
    users: list[str] = []
    for other in rt.boxes.ids():
        if other == box_id:
            continue
        disks = rt.boxes.box_dir(other) / "disks"
        candidates = [disks / "rootfs.qcow2", *sorted((disks / "snapshots").glob("*.qcow2"))]
        if any((qcow2_backing(c) or "").startswith(own) for c in candidates):
            users.append(other)
    return users


def dependent_boxes(rt: Runtime, box_id: str) -> list[str]:
    """The names of _dependent_ids."""
    return [_name(rt, other) for other in _dependent_ids(rt, box_id)]


def removal_order(rt: Runtime, refs: Sequence[str]) -> list[str]:
    """`refs` in an order `rm` can remove them all in: a box after those of them built on
    its disk (its clones), so `rm -f src clone` removes both. Otherwise in the order
    given (a ref that names no box is no one's clone: it goes in the first round)."""
    ids: dict[str, str] = {}
    for ref in refs:
        with contextlib.suppress(BoxliteError):
            ids[ref] = rt.resolve(ref)
    if len(set(ids.values())) < 2:
        return list(refs)
    users = {box_id: set(_dependent_ids(rt, box_id)) for box_id in set(ids.values())}
    remaining, ordered = list(refs), list[str]()
    while remaining:
        left = {ids[r] for r in remaining if r in ids}
        ready = [r for r in remaining if r not in ids or not (users[ids[r]] & (left - {ids[r]}))]
        if not ready:  # (cannot be: a disk is not built on its own clone)
            return ordered + remaining
        ordered += ready
        remaining = [r for r in remaining if r not in ready]
    return ordered


def _name(rt: Runtime, box_id: str) -> str:
    try:
        return rt.boxes.read(box_id).name
    except (StateCorrupt, BoxliteError):
        return rt.boxes.name_of(box_id) or box_id[:12]


def check_no_dependents(rt: Runtime, box_id: str) -> None:
    """Conflict when other boxes' disks are built on this box's (see `rm`)."""
    users = dependent_boxes(rt, box_id)
    if users:
        raise Conflict(f"cannot remove box {_name(rt, box_id)}: the disks of {len(users)} other box(es) are "
                       f"built on its snapshots: {', '.join(sorted(users))}",
                       hint="remove those boxes (its clones) first")


# clone ----------------------------------------------------------------------------------

def _mount_requests(config: BoxConfig) -> list[VolumeRequest]:
    """The source's mounts for a clone: the same binds and named volumes, and a new
    anonymous volume for each anonymous one (never shared between boxes)."""
    return [VolumeRequest(BIND if m.kind == BIND else ("anonymous" if m.anonymous else "volume"),
                          m.source, m.target, m.readonly) for m in config.mounts]


def _free_host_ports(network: NetworkConfig) -> NetworkConfig:
    """The source's published ports for a clone, each on a free host port chosen at every
    start (`boxlite port` says which): a fixed one would keep the clones and their source
    from running at once."""
    return dataclasses.replace(network, ports=[dataclasses.replace(p, host_port=0, host_port_end=0)
                                               for p in network.ports])


def clone(rt: Runtime, ref: str, name: str | None = None, count: int = 1) -> list[BoxState]:
    """COUNT new boxes (status created) with the config of box `ref` and a disk on a
    fresh snapshot of its disk. All or nothing."""
    clean_stale(rt.paths)
    snapshots.collect_unused(rt)
    names = clone_names(name, count)
    for n in names:
        check_name_free(rt, n)
    source_id = rt.resolve(ref)
    source = rt.get(source_id)
    refuse_paused(source, "clone it (its guest cannot flush its disk)")
    check_disk_base(source)  # (clones of a disk nothing can read would hold up its rm)
    fixed = sorted({p.host_ports for p in source.config.network.ports if p.host_port})
    if fixed:
        rt.warn(f"box {source.name} publishes host port(s) {', '.join(fixed)}: its "
                "clones get free ones at each start instead (boxlite port CLONE says which)")
    gone = Conflict(f"box {source.name} was removed while it was being cloned")
    try:
        snap = snapshots.create(rt, source_id, f"clone-{secrets.token_hex(6)}", internal=True)
    except BoxliteError:
        if not rt.boxes.box_dir(source_id).exists():  # (an `rm -f` of it, say mid-freeze)
            raise gone from None
        raise
    base = Path(snap.file)
    made: list[BoxState] = []
    volumes_made: list[str] = []
    try:
        with stage(rt.paths, "clone") as st:
            staged: list[tuple[Path, BoxState]] = []
            for n in names:
                box_id = new_box_id()
                box_dir = st.dir / box_id
                (box_dir / "disks").mkdir(parents=True, mode=0o700)
                box_dir.chmod(0o700)
                try:
                    create_overlay(base, box_dir / "disks" / "rootfs.qcow2", base_format="qcow2")
                except BoxliteError:
                    if not base.exists():  # (an `rm -f` of the source meanwhile)
                        raise gone from None
                    raise
                config = dataclasses.replace(source.config, hostname=box_id[:12], mounts=[],
                                             network=_free_host_ports(source.config.network))
                state = BoxState(id=box_id, name=n, config=config)
                stage_state(box_dir, state)
                staged.append((box_dir, state))
            for box_dir, state in staged:
                if source.config.mounts:
                    mounts, new = resolve_mounts(rt.volumes, _mount_requests(source.config))
                    volumes_made += new
                    state.config.mounts = mounts
                    stage_state(box_dir, state)
            # Under the source's lock, which `rm` takes to look for dependents and remove
            # it: either it sees these clones and refuses, or they see it gone.
            try:
                with rt.boxes.lock(source_id):
                    for box_dir, state in staged:
                        if not base.exists():  # no clone on a disk that is gone
                            raise gone
                        commit_box(rt, box_dir, state)
                        made.append(state)
            except NotFound:
                raise gone from None
    except BaseException:
        for state in made:
            with contextlib.suppress(BoxliteError):
                rt.remove(state.id, volumes=True)
        discard_volumes(rt.volumes, volumes_made)
        with contextlib.suppress(BoxliteError):  # (a kill -9: collect_unused() does it)
            snapshots.remove(rt, source_id, snap.name)
        raise
    return made


def from_checkpoint(rt: Runtime, ref: str, snapshot: str, name: str | None = None,
                    auto_remove: bool = False, publish: Iterable[str] | None = None
                    ) -> tuple[BoxState, Path]:
    """A new box (status created) on memory checkpoint `snapshot` of box `ref`: its disk
    is a fresh overlay on the checkpoint's disk, and the returned memory directory is
    what its start restores (`run --from BOX:NAME`). The guest keeps the source's
    hostname and processes; volumes are not carried (9p state does not migrate).
    `publish` (-p) replaces the source's published ports; `auto_remove` is `--rm`."""
    clean_stale(rt.paths)
    new_name = clone_names(name, 1)[0]
    check_name_free(rt, new_name)
    source_id = rt.resolve(ref)
    source = rt.get(source_id)
    snap = snapshots.box_disks(rt, source_id).get(snapshot)
    if not snap.memory:
        raise UsageError(f"snapshot {snapshot!r} of box {source.name} has no memory: it was "
                         "taken without --memory")
    if source.config.mounts:
        raise UsageError(f"box {source.name} has volumes, which a checkpoint cannot carry")
    # (the restored NIC keeps the source's MAC: the box's is that one)
    network = dataclasses.replace(source.config.network,
                                  mac=source.config.network.mac or box_mac(source.id))
    if publish is not None:  # (the guest's side of the network is the checkpoint's)
        network = dataclasses.replace(network, ports=network_config(
            network.mode, publish=publish).ports)
    snapshots.memory_payload(Path(snap.memory), rt.payload(), source.name, snapshot)
    with stage(rt.paths, "from") as st:
        box_id = new_box_id()
        box_dir = st.dir / box_id
        (box_dir / "disks").mkdir(parents=True, mode=0o700)
        box_dir.chmod(0o700)
        create_overlay(Path(snap.file), box_dir / "disks" / "rootfs.qcow2", base_format="qcow2")
        state = BoxState(id=box_id, name=new_name, config=dataclasses.replace(
            source.config, auto_remove=auto_remove, network=network))
        stage_state(box_dir, state)
        commit_box(rt, box_dir, state)
    return state, Path(snap.memory)
