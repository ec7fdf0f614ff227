"""The `boxlite` command group."""

from __future__ import annotations

import click

from boxlite_cli import __version__
from boxlite_cli.cli.context import CliContext
from boxlite_cli.cli.lazy import LazyGroup

COMMANDS = {
    "run": "boxlite_cli.cli.run:run",
    "create": "boxlite_cli.cli.create:create",
    "start": "boxlite_cli.cli.start:start",
    "exec": "boxlite_cli.cli.exec:exec_",
    "attach": "boxlite_cli.cli.attach:attach",
    "cp": "boxlite_cli.cli.cp:cp",
    "stop": "boxlite_cli.cli.stop:stop",
    "rm": "boxlite_cli.cli.rm:rm",
    "kill": "boxlite_cli.cli.kill:kill",
    "wait": "boxlite_cli.cli.wait:wait",
    "pause": "boxlite_cli.cli.pause:pause",
    "unpause": "boxlite_cli.cli.pause:unpause",
    "restart": "boxlite_cli.cli.restart:restart",
    "inspect": "boxlite_cli.cli.inspect:inspect",
    "port": "boxlite_cli.cli.port:port",
    "rename": "boxlite_cli.cli.rename:rename",
    "update": "boxlite_cli.cli.update:update",
    "prune": "boxlite_cli.cli.prune:prune",
    "stats": "boxlite_cli.cli.stats:stats",
    "top": "boxlite_cli.cli.top:top",
    "ps": "boxlite_cli.cli.ps:ps",
    "logs": "boxlite_cli.cli.logs:logs",
    "snapshot": "boxlite_cli.cli.snapshot:snapshot",
    "clone": "boxlite_cli.cli.clone:clone",
    "export": "boxlite_cli.cli.export:export",
    "commit": "boxlite_cli.cli.commit:commit",
    "diff": "boxlite_cli.cli.diff:diff",
    "import": "boxlite_cli.cli.import_:import_",
    "images": "boxlite_cli.cli.images:images",
    "load": "boxlite_cli.cli.load:load",
    "save": "boxlite_cli.cli.save:save",
    "image": "boxlite_cli.cli.image:image",
    "pull": "boxlite_cli.cli.pull:pull",
    "push": "boxlite_cli.cli.push:push",
    "rmi": "boxlite_cli.cli.rmi:rmi",
    "tag": "boxlite_cli.cli.tag:tag",
    "history": "boxlite_cli.cli.history:history",
    "volume": "boxlite_cli.cli.volume:volume",
    "login": "boxlite_cli.cli.login:login",
    "logout": "boxlite_cli.cli.login:logout",
    "doctor": "boxlite_cli.cli.doctor:doctor",
    "info": "boxlite_cli.cli.info:info",
    "system": "boxlite_cli.cli.system:system",
    "version": "boxlite_cli.cli.version:version",
    "completion": "boxlite_cli.cli.completion_cmd:completion",
}
# The names docker's `container ls` and the original BoxLite's CLI give `ps`.
ALIASES = {"ls": "ps", "list": "ps"}
# docker's `container` group (`docker container ls`, `... rm`): taken, not listed.
UNLISTED = {"container": "boxlite_cli.cli.container:container"}
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=LazyGroup, lazy=COMMANDS, aliases=ALIASES, unlisted=UNLISTED,
             context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Show full error details (tracebacks).")
@click.version_option(__version__, "-v", "--version", prog_name="boxlite")  # (-v: docker's)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run OCI container images inside per-box micro-VMs.

    Each box is a virtual machine with one container root filesystem inside it: the
    isolation of a VM, the feel of `docker run`.
    """
    ctx.obj = CliContext(debug=debug)
