"""boxlite doctor: check the host and say how to fix each problem."""

from __future__ import annotations

import click

from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import format_option, print_json, print_table


@click.command()
@format_option
@pass_cli
def doctor(cli: CliContext, fmt: str) -> int:
    """Check QEMU, disk tools, the guest payload and the accelerators.

    Exits 1 when something boxlite needs is missing.
    """
    from boxlite_cli.runtime.doctor import run_checks

    checks = run_checks()
    if fmt == "json":
        print_json([c.to_json() for c in checks])
    else:
        rows = [[c.name, "ok" if c.ok else ("missing" if c.required else "unavailable"),
                 c.detail + (f"\n  fix: {c.fix}" if c.fix and not c.ok else "")] for c in checks]
        flat = []
        for name, status, detail in rows:
            first, *rest = detail.split("\n")
            flat.append([name, status, first])
            flat += [["", "", line] for line in rest]
        print_table(["CHECK", "STATUS", "DETAIL"], flat)
    return 0 if all(c.ok or not c.required for c in checks) else 1
