"""Printing tables (docker-style aligned columns) and their `--format json` twin."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from boxlite_cli.cli.printable import printable
from boxlite_cli.fdio import same_file

F = TypeVar("F", bound=Callable[..., Any])

class _TableOrJson(click.Choice):
    """table or json; an empty value is the table (docker's: `--format "$FMT"`, unset)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return "table" if value == "" else super().convert(value, param, ctx)


def format_option(f: F) -> F:
    return click.option("--format", "fmt", type=_TableOrJson(["table", "json"]),
                        default="table", show_default=True,
                        help="Output format.")(f)


def _table_json_or_template(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value:  # (docker's: `--format "$FMT"` with FMT unset is the table)
        return "table"
    if value in ("table", "json") or "{{" in value:
        return value
    raise click.BadParameter(f"{value!r}: use table, json or a template such as "
                             "'{{json .}}'", ctx, param)


def template_format_option(example: str, short: bool = False) -> Callable[[F], F]:
    """--format of a listing: table, json, or a docker-style template (`example`),
    rendered once per item (cli/template.py); `short`: -f too (docker's, where -f is
    not --filter)."""
    names = ("-f", "--format") if short else ("--format",)
    return click.option(*names, "fmt", default="table", show_default=True,
                        callback=_table_json_or_template,
                        help=f"table, json, or a template such as '{example}' (a line each).")


def print_lines(template: str, records: Sequence[dict[str, Any]],
                headers: dict[str, str] | None = None) -> None:
    """One line per record from a --format template; `table TEMPLATE` (docker's): a
    header row first (a field's name in `headers`, else its own in capitals), and the
    tab-separated columns aligned."""
    from boxlite_cli.cli.template import check, header, render

    check(template)
    if not template.startswith("table"):
        lines = [render(template, record) for record in records]  # (an error prints nothing)
        for line in lines:
            click.echo(line)
        return
    body = template[len("table"):].lstrip()
    # (a newline in a row ends it, as in docker's tabwriter)
    rows = [line.split("\t") for record in records for line in render(body, record).split("\n")]
    names = header(body, headers).split("\t")
    columns = max([len(names), *(len(row) for row in rows)])  # (a {{range}} makes more)
    print_table([*names, *[""] * (columns - len(names))],
                [[*row, *[""] * (columns - len(row))] for row in rows])


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    rows = [[printable(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for row in [headers, *rows]:
        click.echo("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_records(fmt: str, records: list[dict[str, Any]]) -> None:
    """inspect's output: a JSON array (also for an empty format, as docker's), or one
    line per record from a Go-style template."""
    from boxlite_cli.cli.template import check, render

    if fmt in ("json", ""):
        print_json(records)
        return
    check(fmt)
    for record in records:
        click.echo(render(fmt, record))


# Inside a JSON string, what a terminal could take for a control (C1, DEL) or a line
# break (U+2028/9) stays escaped; the rest is UTF-8, as docker prints it
_ESCAPED = re.compile("[\x7f-\x9f\u2028\u2029]")


def print_json(data: Any) -> None:
    utf8 = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "") == "utf8"
    text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=not utf8)
    if utf8:
        # (a name that is no UTF-8, kept as surrogates: its JSON escape, as before)
        text = _ESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode(
            "utf-8", "backslashreplace").decode()
    click.echo(text)


NEVER = "0001-01-01T00:00:00Z"  # (docker's time of what never happened)


def rfc3339(ts: float | None) -> str:
    """A Unix time as JSON outputs give times: RFC 3339, UTC (`Z`); NEVER for none."""
    from datetime import UTC, datetime  # (only for the commands that print times)

    if not ts:
        return NEVER
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _scaled(n: int, step: int, units: tuple[str, ...], digits: int) -> str:
    size = float(n)
    for unit in units[:-1]:
        if size < step:
            return f"{size:.{digits}g}{unit}"
        size /= step
    return f"{size:.{digits}g}{units[-1]}"


def go_time(ts: float | None) -> str:
    """A Unix time as docker's templates print one (Go's time.String, local time):
    `2026-11-30 04:23:57 +0000 UTC`; "" for none."""
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(ts))


def echo_pruned(sections: Sequence[tuple[str, Sequence[str]]], freed: int) -> None:
    """What a prune removed, as docker prints it on standard output: each non-empty
    section under its title, then the space given back."""
    for title, names in sections:
        if names:
            click.echo(f"{title}:\n" + "".join(f"{n}\n" for n in names))
    click.echo(f"Total reclaimed space: {human_size(freed)}")


def human_size(n: int) -> str:
    """Decimal units, as docker images shows sizes: 120MB."""
    return _scaled(n, 1000, ("B", "kB", "MB", "GB", "TB"), 3)


def human_binary(n: int) -> str:
    """Binary units, as docker stats shows memory: 512MiB, 1.5GiB."""
    return _scaled(n, 1024, ("B", "KiB", "MiB", "GiB", "TiB"), 4)


def human_duration(seconds: float) -> str:
    """docker's rough durations, as go-units' HumanDuration prints them: 'Less than a
    second', '3 seconds', 'About a minute', '5 minutes', 'About an hour' (hours round to
    the nearest), '30 hours', then days, weeks, months and years."""
    s = int(seconds)
    minutes = s // 60
    hours = int(seconds / 3600 + 0.5)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}"
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(ts: float | None) -> str:
    return "" if ts is None else f"{human_duration(time.time() - ts)} ago"


def one_output_file() -> bool:
    """Our stdout and stderr are one file (a shell's `2>&1`, one terminal): a box's
    process then writes both to one pipe, so they keep their order."""
    try:
        return same_file(sys.stdout.fileno(), sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def std_fds() -> tuple[int, int] | None:
    """Our stdout and stderr, flushed, for a shim to write a process's output into
    directly; None when they are not real files (the output then comes over gRPC)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        return sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def confirmed(question: str) -> bool:
    """`QUESTION [y/N]: ` answered on stdin; the end of the input (a script's
    `</dev/null`) is a no, not an interruption."""
    click.echo(f"{question} [y/N]: ", nl=False)
    answer = sys.stdin.readline()
    if not answer:
        click.echo()
    return answer.strip().lower() in ("y", "yes")
