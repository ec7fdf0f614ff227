"""A click group that imports a subcommand's module only when it runs (fast start-up)."""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """`lazy`: command name -> "module:attribute"; `aliases`: other names of commands,
    taken but not listed (`boxlite ls` is `boxlite ps`); `unlisted`: commands taken but
    not listed, in help, man pages or completion (docker's `container` group)."""

    def __init__(self, *args: object, lazy: dict[str, str] | None = None,
                 aliases: dict[str, str] | None = None,
                 unlisted: dict[str, str] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy or {}
        self.aliases = aliases or {}
        self.unlisted = unlisted or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        """The command and its arguments, docker's spellings of options rewritten
        (`--rm=true`, `-e=A=1`: dockerargs.py)."""
        from boxlite_cli.cli.dockerargs import rewrite

        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not isinstance(command, click.Group) \
                and not ctx.resilient_parsing:  # (completion: as typed)
            rest = rewrite(command, rest)
        return name, command, rest

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        name = self.aliases.get(name, name)
        if name in self.lazy or name in self.unlisted:
            module, _, attr = (self.lazy.get(name) or self.unlisted[name]).partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, name)
