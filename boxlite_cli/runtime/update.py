"""docker's `update`: change a box's restart policy and its size after `create`.

The restart policy counts from the next end of the box's main process (its shim reads
it then; a restart a changed policy no longer wants is not made). CPUs, memory and the
pids limit are the VM's and the guest's: a running box keeps its own until it starts
again. A box with memory checkpoints keeps its size and pids limit: they resume a VM of
the size, and a guest with the limits, they were taken in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from boxlite_cli.errors import Conflict, UsageError
from boxlite_cli.runtime.spec import check_box_size
from boxlite_cli.state.records import BoxState, Status
from boxlite_cli.state.restartpolicy import NO as NO_RESTART
from boxlite_cli.state.restartpolicy import parse_restart

if TYPE_CHECKING:
    from boxlite_cli.runtime.runtime import Runtime


@dataclass(frozen=True)
class BoxUpdate:
    """What to change (None: as it is)."""

    restart: str | None = None
    cpus: tuple[int, float] | None = None  # (vCPUs, CPU limit): parse_cpus's
    memory_mib: int | None = None
    pids_limit: int | None = None  # pids_limit_of's (0: none)

    def resizes(self) -> bool:
        return self.cpus is not None or self.memory_mib is not None


@dataclass(frozen=True)
class Updated:
    state: BoxState
    later: bool  # the size changed while it runs: from its next start


def update(rt: Runtime, ref: str, change: BoxUpdate) -> Updated:
    """Apply `change` to box `ref` under its lock; UsageError or Conflict say why not."""
    from boxlite_cli.runtime import snapshots  # (only for a change of size)

    box_id = rt.resolve(ref)
    current = rt.get(box_id).config
    if (change.cpus not in (None, (current.cpus, current.cpu_limit))
            or change.memory_mib not in (None, current.memory_mib)
            or change.pids_limit not in (None, current.pids_limit)):
        checkpoints = [s.name for s in snapshots.list_all(rt, box_id) if s.memory]
        if checkpoints:  # (a resumed guest keeps its VM and its cgroup's limits)
            raise Conflict(f"box {rt.get(box_id).name} has memory checkpoints "
                           f"({', '.join(checkpoints)}): its CPUs, memory and pids limit "
                           "stay", hint="remove them first: boxlite snapshot rm BOX NAME")
    with rt.boxes.lock(box_id):
        state = rt.boxes.read(box_id)
        config = state.config
        if change.restart is not None:
            restart = parse_restart(change.restart)
            if restart != NO_RESTART and config.auto_remove:
                raise UsageError(f"box {state.name} is removed when it ends (--rm): it "
                                 "cannot be started again by a restart policy")
            config.restart = restart
        if change.cpus is not None:
            config.cpus, config.cpu_limit = change.cpus
        if change.memory_mib is not None:
            config.memory_mib = change.memory_mib
        check_box_size(config.cpus, config.memory_mib)
        if change.pids_limit is not None:
            config.pids_limit = change.pids_limit
        rt.boxes.write(state)
    state = rt.observe(state)  # (as it is seen: a box whose shim died has ended)
    resized = change.resizes() or change.pids_limit is not None
    return Updated(state, later=resized and state.status not in (Status.CREATED, Status.EXITED))
