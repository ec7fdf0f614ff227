"""Click groups: subcommands imported only when they run (fast start-up), and usage
errors that name the subcommand's help."""

from __future__ import annotations

import importlib

import click


class HintedGroup(click.Group):
    """A group whose subcommands' usage errors name the subcommand's help."""

    def invoke(self, ctx: click.Context) -> object:
        """A subcommand's usage error that click raised with no context (an option
        without its value) is given that subcommand's, so its hint names its help."""
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            name = ctx.invoked_subcommand
            command = self.get_command(ctx, name) if e.ctx is None and name else None
            if command is not None:
                e.ctx = click.Context(command, info_name=name, parent=ctx)
            raise


class LazyGroup(HintedGroup):
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
