"""boxlite version: the versions of boxlite and of what it runs on (docker's `version`)."""

from __future__ import annotations

import platform
from typing import Any

import click

from boxlite_cli import __version__
from boxlite_cli.cli.context import CliContext, pass_cli
from boxlite_cli.cli.output import print_json, print_lines, template_format_option
from boxlite_cli.errors import BoxliteError

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # (docker's names of the architectures)


def gather(cli: CliContext) -> dict[str, Any]:
    from boxlite_cli.runtime.doctor import tool_version

    guest: dict[str, Any] = {}
    try:
        manifest = cli.runtime.payload().manifest()
        guest = {"kernel": manifest.get("kernel_version"), "python": manifest.get("python"),
                 "payload": manifest.get("hash")}
    except BoxliteError as e:  # (no payload built yet: said, not fatal)
        guest = {"error": e.message}
    arch = platform.machine()
    return {"version": __version__, "python": platform.python_version(),
            "os_arch": f"{platform.system().lower()}/{GO_ARCH.get(arch, arch)}",
            "qemu": tool_version("qemu-system-x86_64"), "guest": guest}


@click.command()
@template_format_option("{{.Client.Version}}", short=True)
@pass_cli
def version(cli: CliContext, fmt: str) -> int:
    """Show the versions of boxlite, QEMU and the guest (kernel, agent's Python)."""
    data = gather(cli)
    if fmt == "json":
        print_json(data)
        return 0
    if fmt != "table":  # (docker's `{{.Client.Version}}` and `{{.Server.Version}}` too)
        os_name, _, arch = data["os_arch"].partition("/")
        client = {"Version": data["version"], "Os": os_name, "Arch": arch}
        print_lines(fmt, [{**data, "Client": client,
                           "Server": {**client, "Qemu": data["qemu"], "Guest": data["guest"]}}])
        return 0
    click.echo(f"boxlite:      {data['version']}")
    click.echo(f" Python:      {data['python']}")
    click.echo(f" OS/Arch:     {data['os_arch']}")
    click.echo(f" QEMU:        {data['qemu'] or 'not installed'}")
    guest = data["guest"]
    if "error" in guest:
        click.echo(f" Guest:       {guest['error']}")
    else:
        click.echo(f" Guest:       Linux {guest['kernel']}, Python {guest['python']} "
                   f"(payload {guest['payload']})")
    return 0
