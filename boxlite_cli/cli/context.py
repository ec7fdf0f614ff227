"""What every command gets: the runtime, --debug, and how to warn."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from boxlite_cli.cli.printable import printable

if TYPE_CHECKING:
    from boxlite_cli.runtime.runtime import Runtime


def warn(message: str) -> None:
    click.echo(f"boxlite: warning: {printable(message)}", err=True)


def notice(message: str) -> None:
    """What a command does besides its job (run's pull), said on stderr as docker's."""
    click.echo(printable(message), err=True)


@contextlib.contextmanager
def activity(text: str, quiet: bool = False) -> Iterator[None]:
    """A rich spinner on stderr while long work runs; nothing when stderr is not a
    terminal, or `quiet`."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(text):
        yield


@dataclass
class CliContext:
    debug: bool = False
    quiet_pull: bool = False  # (run -q, create -q: a pull shows no progress)
    _runtime: Runtime | None = field(default=None, repr=False)

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            from boxlite_cli.runtime.runtime import Runtime

            if self.quiet_pull:
                self._runtime = Runtime(warn=warn, activity=activity)
            else:
                from boxlite_cli.cli.progress import pull_display

                self._runtime = Runtime(warn=warn, activity=activity,
                                        pull_display=pull_display, notice=notice)
        return self._runtime


pass_cli = click.make_pass_decorator(CliContext, ensure=True)
