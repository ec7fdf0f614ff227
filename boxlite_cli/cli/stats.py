"""boxlite stats: CPU and memory use of running boxes' VMs."""

from __future__ import annotations

import time

import click

from boxlite_cli.cli.completion import complete_running_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import (
    human_binary,
    human_size,
    print_json,
    print_lines,
    print_table,
    template_format_option,
)
from boxlite_cli.errors import BoxliteError, NotFound
from boxlite_cli.runtime.runtime import BoxStats
from boxlite_cli.state.records import BoxState, Status

# docker's column names of stats's template fields
HEADERS = {"ID": "BOX ID", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
           "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


def _docker_row(s: BoxStats) -> dict[str, str]:
    """A sample as docker's `stats --format` templates know it (`{{.CPUPerc}}`)."""
    return {"ID": s.id[:12], "Container": s.id[:12], "Name": s.name,
            "CPUPerc": f"{s.cpu_percent:.2f}%",
            "MemUsage": f"{human_binary(s.memory_bytes)} / {human_binary(s.memory_limit_bytes)}",
            "MemPerc": f"{100.0 * s.memory_bytes / max(s.memory_limit_bytes, 1):.2f}%",
            "NetIO": "--",  # (QEMU's user-mode network keeps no counters)
            "BlockIO": f"{human_size(s.block_read_bytes)} / {human_size(s.block_write_bytes)}",
            "PIDs": "--" if s.pids is None else str(s.pids)}


def _rows(stats: list[BoxStats]) -> list[list[str]]:
    return [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"], r["BlockIO"],
             r["PIDs"]] for r in map(_docker_row, stats)]


@click.command()
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@template_format_option("{{.Name}} {{.CPUPerc}} {{.MemUsage}}")
@click.argument("boxes", nargs=-1, shell_complete=complete_running_box)
@pass_cli
def stats(cli: CliContext, no_stream: bool, fmt: str, boxes: tuple[str, ...]) -> int:
    """Show CPU (percent of one host CPU) and memory of running boxes (default: all).

    Memory is what the box's VM holds on the host (the guest RAM it touched, plus
    QEMU's own), against the box's --memory: it can pass 100%, and the guest's freed
    RAM is not given back. The table refreshes until interrupted (--no-stream: once);
    --format json prints one sample, a JSON array, and exits. BLOCK I/O is what the VM
    read from and wrote to the host's storage; PIDS the box's processes and threads. A
    template takes docker's fields: {{.ID}}, {{.Name}}, {{.CPUPerc}}, {{.MemUsage}},
    {{.MemPerc}}, {{.BlockIO}}, {{.PIDs}} ({{.NetIO}} is --: the user-mode network keeps
    no counters)."""
    rt = cli.runtime
    while True:
        refs = list(boxes) or [s.id for s in rt.list_boxes(all_boxes=False)
                               if isinstance(s, BoxState) and s.status == Status.RUNNING]
        sampled = []
        for ref in refs:
            try:
                sampled.append(rt.stats(ref))
            except NotFound:
                if boxes:
                    raise
            except BoxliteError:
                if boxes:  # (a box named that is not running: a row of zeros, as docker's)
                    state = rt.get(ref)
                    sampled.append(BoxStats(state.id, state.name, 0.0, 0,
                                            state.config.memory_mib * 1024 * 1024))
        if fmt == "json":
            print_json([s.__dict__ for s in sampled])
        else:
            if not no_stream:
                click.clear()
            if fmt == "table":
                print_table(["BOX ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                             "BLOCK I/O", "PIDS"], _rows(sampled))
            else:
                print_lines(fmt, [_docker_row(s) for s in sampled], HEADERS)
        if no_stream or fmt == "json":
            return 0
        time.sleep(0.5)
