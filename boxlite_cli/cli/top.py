"""boxlite top: the processes running in a box."""

from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING

import click

from boxlite_cli.cli.completion import complete_unpaused_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import (
    human_binary,
    print_json,
    print_lines,
    print_table,
    template_format_option,
)
from boxlite_cli.errors import UsageError

if TYPE_CHECKING:  # (grpc is imported only once a box is asked)
    from boxlite_cli.agent.client import ProcessInfo

HEADERS = ["PID", "PPID", "USER", "STAT", "TIME", "RSS", "STIME", "COMMAND"]
DAY_S = 86400.0


def cpu_time(seconds: float) -> str:
    """ps's TIME: [DD-]HH:MM:SS of CPU."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def start_time(started: float, now: float) -> str:
    """ps's STIME: the time of day when it started today, else the date."""
    if started <= 0:
        return "?"
    local = time.localtime(started)
    if now - started < DAY_S and local.tm_mday == time.localtime(now).tm_mday:
        return time.strftime("%H:%M", local)
    return time.strftime("%b%d", local)


def command_line(p: ProcessInfo) -> str:
    """The argv, quoted as for a shell; [name] for a process without one (ps); `…` at
    the end of one that was cut."""
    text = shlex.join(p.argv) if p.argv else f"[{p.name}]"
    return f"{text} …" if p.argv_cut else text


def rows(processes: list[ProcessInfo], now: float) -> list[list[str]]:
    return [[str(p.pid), str(p.ppid), p.user or str(p.uid), p.state, cpu_time(p.cpu_s),
             human_binary(p.rss_bytes), start_time(p.started, now), command_line(p)]
            for p in processes]


def to_json(p: ProcessInfo) -> dict[str, object]:
    return {"pid": p.pid, "ppid": p.ppid, "uid": p.uid, "user": p.user, "state": p.state,
            "cpu_seconds": round(p.cpu_s, 2), "rss_bytes": p.rss_bytes,
            "started_at": round(p.started, 2), "threads": p.threads, "name": p.name,
            "command": list(p.argv), "command_cut": p.argv_cut}


@click.command(context_settings={"ignore_unknown_options": True})
@template_format_option("{{.Pid}} {{.Name}}")
@click.argument("box", shell_complete=complete_unpaused_box)
@click.argument("ps_options", nargs=-1, type=click.UNPROCESSED)
@pass_cli
def top(cli: CliContext, fmt: str, box: str, ps_options: tuple[str, ...]) -> int:
    """List the processes running in BOX, by their PIDs in the box (PID 1 is the box's
    init), with their user, state, CPU time, memory and command line.

    The list comes from the guest kernel, not from a `ps` in the box (whose image may
    have none). docker's ps options are not taken: --format json has every field."""
    if ps_options:
        raise UsageError(f"boxlite top takes no ps options ({shlex.join(ps_options)})",
                         hint="--format json lists every field of each process")
    processes = cli.runtime.top(box)
    if fmt == "json":
        print_json([to_json(p) for p in processes])
    elif fmt != "table":
        print_lines(fmt, [to_json(p) for p in processes])
    else:
        print_table(HEADERS, rows(processes, time.time()))
    return 0
