"""boxlite update: change a box's restart policy, CPUs, memory or pids limit."""

from __future__ import annotations

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli, warn
from boxlite_cli.cli.errors import each_box
from boxlite_cli.errors import UsageError
from boxlite_cli.state.restartpolicy import POLICIES


@click.command()
@click.option("--restart", metavar="POLICY", default=None,
              shell_complete=lambda ctx, param, incomplete: [
                  p for p in POLICIES if p.startswith(incomplete)],
              help="The restart policy: no, always, unless-stopped, on-failure[:N] (from "
                   "the next end of the main process).")
@click.option("--cpus", metavar="N", default=None,
              help="CPUs, as run's --cpus (from the box's next start).")
@click.option("-m", "--memory", metavar="SIZE", default=None,
              help="RAM of the box's VM, as run's --memory (from its next start).")
@click.option("--pids-limit", type=int, default=None, metavar="N",
              help="Processes and threads the box may have at once (-1 or 0: no limit; "
                   "from its next start).")
@click.argument("boxes", nargs=-1, required=True, shell_complete=complete_box)
@pass_cli
def update(cli: CliContext, restart: str | None, cpus: str | None, memory: str | None,
           pids_limit: int | None, boxes: tuple[str, ...]) -> int:
    """Change the restart policy or the size of one or more boxes; prints each one.

    A running box keeps the CPUs, memory and pids limit it started with until it starts
    again (its VM has them); a box with memory checkpoints keeps its CPUs, memory and
    pids limit.
    """
    from boxlite_cli.runtime.spec import parse_cpus, parse_memory_mib, pids_limit_of
    from boxlite_cli.runtime.update import BoxUpdate

    if restart is None and cpus is None and memory is None and pids_limit is None:
        raise UsageError("nothing to update: give --restart, --cpus, --memory or --pids-limit",
                         hint="see 'boxlite update --help'")
    change = BoxUpdate(
        restart=restart, cpus=parse_cpus(cpus) if cpus is not None else None,
        memory_mib=parse_memory_mib(memory) if memory is not None else None,
        pids_limit=pids_limit_of(pids_limit) if pids_limit is not None else None)

    def apply(ref: str) -> None:
        if cli.runtime.update(ref, change).later:
            warn(f"box {ref} runs on with its CPUs, memory and pids limit until it starts "
                 "again")

    return each_box(boxes, apply)
