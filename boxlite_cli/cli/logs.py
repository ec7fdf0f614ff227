"""boxlite logs: the output of a box's main process."""

from __future__ import annotations

import datetime
import time

import click

from boxlite_cli.cli.completion import complete_box
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.errors import BoxliteError, UsageError
from boxlite_cli.fdio import write_all
from boxlite_cli.runtime.logtime import parse_log_time
from boxlite_cli.shim.logframes import LogRecord, TimeWindow

STDERR = 1
UNKNOWN_TIME = "0001-01-01T00:00:00.000000000Z"  # (docker's zero time)


def timestamp(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, as docker's `logs -t` prints."""
    if ns <= 0:
        return UNKNOWN_TIME
    seconds, frac = divmod(ns, 1_000_000_000)
    at = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return f"{at:%Y-%m-%dT%H:%M:%S}.{frac:09d}Z"


class Stamper:
    """Puts the receiving time before each line of each stream (`logs -t`): a line
    continued in a later record keeps the time its first piece came at."""

    def __init__(self) -> None:
        self.mid_line: set[int] = set()  # the streams whose last line is unfinished

    def stamp(self, record: LogRecord) -> bytes:
        prefix = timestamp(record.ns).encode() + b" "
        out = []
        for piece in record.data.splitlines(keepends=True):
            if record.stream not in self.mid_line:
                out.append(prefix)
            out.append(piece)
            if piece.endswith(b"\n"):
                self.mid_line.discard(record.stream)
            else:
                self.mid_line.add(record.stream)
        return b"".join(out)


def _tail_lines(tail: str) -> int | None:
    """--tail: a number of lines, or all of them ('all', or a negative number: docker's)."""
    try:
        lines = None if tail == "all" else int(tail)
    except ValueError:
        raise UsageError(f"invalid --tail {tail!r}: a number of lines, or 'all'") from None
    return None if lines is None or lines < 0 else lines


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the box stops.")
@click.option("-n", "--tail", "tail", default="all", show_default=True,
              help="Number of lines to show from the end ('all', or a negative number: all).")
@click.option("-t", "--timestamps", is_flag=True,
              help="Put the time each line was received before it (RFC 3339, UTC).")
@click.option("--since", metavar="TIME",
              help="Only output received since TIME: 2026-11-30T10:00:00Z, a Unix time, "
                   "or a duration before now (10m, 1h30m).")
@click.option("--until", metavar="TIME", help="Only output received before TIME (as --since).")
@click.argument("box", shell_complete=complete_box)
@pass_cli
def logs(cli: CliContext, follow: bool, tail: str, timestamps: bool, since: str | None,
         until: str | None, box: str) -> int:
    """Print what BOX's main process wrote (stdout to stdout, stderr to stderr).

    Kept for every start of the box, in the foreground or in the background.
    """
    last = _tail_lines(tail)
    now = time.time_ns()
    window = TimeWindow(None if since is None else parse_log_time(since, now, "--since"),
                        None if until is None else parse_log_time(until, now, "--until"))
    stamper = Stamper() if timestamps else None
    for record in cli.runtime.logs(box, follow=follow, tail=last, window=window):
        data = stamper.stamp(record) if stamper is not None else record.data
        fd = 2 if record.stream == STDERR else 1
        try:
            if not write_all(fd, data):
                break  # the reader went away (`logs -f | head`): so do we
        except OSError as e:  # (`> /dev/full`: the output's, not the disk's)
            where = "standard error" if fd == 2 else "standard output"
            raise BoxliteError(f"cannot write to {where}: {e.strerror}") from e
    return 0
