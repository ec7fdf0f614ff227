"""What every command gets: the runtime, --debug, and how to warn."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from boxlite_cli.runtime.runtime import Runtime


def warn(message: str) -> None:
    click.echo(f"boxlite: warning: {message}", err=True)


@dataclass
class CliContext:
    debug: bool = False
    _runtime: Runtime | None = field(default=None, repr=False)

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            from boxlite_cli.runtime.runtime import Runtime

            self._runtime = Runtime(warn=warn)
        return self._runtime


pass_cli = click.make_pass_decorator(CliContext, ensure=True)
