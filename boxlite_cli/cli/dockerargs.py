"""docker's spellings of options that click does not take: a flag given a value
(`--rm=true`, `-d=false`, as docker's flag parser takes them) and a short option's value
after `=` (`-e=A=1`). Rewritten before the command parses its arguments, up to its first
positional argument (what follows, a box's own command, is never touched)."""

from __future__ import annotations

import click

TRUE, FALSE = ("true", "1", "t"), ("false", "0", "f")


def _option(command: click.Command, name: str) -> click.Option | None:
    for param in command.params:
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def rewrite(command: click.Command, args: list[str]) -> list[str]:
    """`args` of `command` with docker's spellings in click's."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            return out + args[i:]  # (the first positional: the rest is not ours)
        name, eq, value = arg.partition("=")
        option = _option(command, name)
        if option is not None and eq and option.is_flag and not option.count:
            if value.lower() not in TRUE + FALSE:
                raise click.BadParameter(f"{value!r} is not true or false", param=option)
            wanted = value.lower() in TRUE
            if name in option.secondary_opts:  # (--no-sig-proxy=false is --sig-proxy)
                wanted = not wanted
                name = option.opts[-1]
            if wanted:
                out.append(name)
            elif option.secondary_opts:  # (--sig-proxy=false: its --no- form)
                out.append(option.secondary_opts[-1])
            i += 1
            continue
        if option is not None and eq and not name.startswith("--"):
            out += [name, value]  # (-e=A=1 is -e A=1)
            i += 1
            continue
        out.append(arg)
        if (option is not None and not eq and not option.is_flag and not option.count
                and i + 1 < len(args)):
            out.append(args[i + 1])  # (its value, even one that starts with "-")
            i += 1
        i += 1
    return out
