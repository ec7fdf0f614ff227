"""boxlite stats: CPU, memory, block I/O and pids of running boxes."""

from __future__ import annotations

import time

import click

from boxlite_cli.cli.completion import complete_running_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.errors import MAX_PARALLEL
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
            "NetIO": f"{human_size(s.net_rx_bytes)} / {human_size(s.net_tx_bytes)}",
            "BlockIO": f"{human_size(s.block_read_bytes)} / {human_size(s.block_write_bytes)}",
            "PIDs": "--" if s.pids is None else str(s.pids)}


def _rows(stats: list[BoxStats]) -> list[list[str]]:
    return [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"], r["NetIO"],
             r["BlockIO"], r["PIDs"]] for r in map(_docker_row, stats)]


def _sample(cli: CliContext, ref: str, named: bool) -> BoxStats | None:
    """One box's sample; None for one that went away (unless `named`: then raised)."""
    try:
        return cli.runtime.stats(ref)
    except NotFound:
        if named:
            raise
    except BoxliteError:
        if named:  # (a box named that is not running: a row of zeros, as docker's)
            state = cli.runtime.get(ref)
            return BoxStats(state.id, state.name, 0.0, 0, state.config.memory_mib * 1024 * 1024)
    return None


def _sample_all(cli: CliContext, refs: list[str], named: bool) -> list[BoxStats | None]:
    """The boxes' samples, taken at once (each waits its interval, and its guest's
    answer: one busy box does not hold the others' rows back)."""
    if len(refs) <= 1:
        return [_sample(cli, ref, named) for ref in refs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(refs), MAX_PARALLEL)) as pool:
        return list(pool.map(lambda ref: _sample(cli, ref, named), refs))


@click.command()
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@template_format_option("{{.Name}} {{.CPUPerc}} {{.MemUsage}}")
@click.argument("boxes", nargs=-1, shell_complete=complete_running_box)
@pass_cli
def stats(cli: CliContext, no_stream: bool, fmt: str, boxes: tuple[str, ...]) -> int:
    """Show CPU (percent of one host CPU) and memory of running boxes (default: all).

    Memory is what the box's processes use (docker's: its cgroup's, less the file cache
    the kernel takes back first) against the most they may (a little less than
    --memory: the guest's kernel and agent keep the rest); from a guest too busy to say
    within 5 s, what its VM holds on the host against --memory (JSON's vm_memory_bytes
    is always that). The table refreshes until interrupted (--no-stream: once);
    --format json prints one sample, a JSON array, and exits. NET I/O is what the box's
    network interfaces received and sent since its VM booted; BLOCK I/O what the VM read
    from and wrote to the host's storage; PIDS the box's processes and threads. A
    template takes docker's fields: {{.ID}}, {{.Name}}, {{.CPUPerc}}, {{.MemUsage}},
    {{.MemPerc}}, {{.NetIO}}, {{.BlockIO}}, {{.PIDs}}."""
    rt = cli.runtime
    while True:
        refs = list(boxes) or [s.id for s in rt.list_boxes(all_boxes=False)
                               if isinstance(s, BoxState) and s.status == Status.RUNNING]
        sampled = [s for s in _sample_all(cli, refs, named=bool(boxes)) if s is not None]
        if fmt == "json":
            print_json([s.__dict__ for s in sampled])
        else:
            if not no_stream:
                click.clear()
            if fmt == "table":
                print_table(["BOX ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                             "NET I/O", "BLOCK I/O", "PIDS"], _rows(sampled))
            else:
                print_lines(fmt, [_docker_row(s) for s in sampled], HEADERS)
        if no_stream or fmt == "json":
            return 0
        time.sleep(0.5)
