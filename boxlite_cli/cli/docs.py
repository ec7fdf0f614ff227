"""Shell completion scripts and man pages, generated from the click command tree.

  python -m boxlite_cli.cli.docs          rewrite completions/ and man/
  python -m boxlite_cli.cli.docs --check  exit 1 if they are stale
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import click
from click.shell_completion import get_completion_class

from boxlite_cli import __version__

SHELLS = {"bash": "boxlite.bash", "zsh": "_boxlite", "fish": "boxlite.fish"}
ROOT = Path(__file__).resolve().parents[2]
MAN_DATE = "2026"
HELP_OPTIONS = ["-h", "--help"]


def completion_script(shell: str) -> str:
    """The completion script for `shell`; it asks `boxlite` itself for candidates."""
    from boxlite_cli.cli.app import cli

    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"unsupported shell {shell!r}: choose bash, zsh or fish")
    source = cls(cli, {}, "boxlite", "_BOXLITE_COMPLETE").source()
    if shell == "bash":
        source = _bash_colons(source)
    elif shell == "zsh":
        source = _zsh_no_space(source)
    return source


# A candidate that more of the word follows (cp's `BOX:`, a filter's `KEY=`, a
# directory's `/`, --mount's `VALUE,`) gets no space after it: zsh's script is given
# a list of its own for those (compadd -S ''); fish leaves none after such by itself.
ZSH_DECLARE = "    local -a completions_with_descriptions\n"
ZSH_PLAIN = '            if [[ "$descr" == "_" ]]; then\n'
ZSH_NO_SPACE = ('            if [[ "$descr" == "_" && "$key" == *[:=/,] ]]; then\n'
                '                completions_no_space+=("$key")\n'
                '            elif [[ "$descr" == "_" ]]; then\n')
ZSH_ADD = ('    if [ -n "$completions" ]; then\n'
           '        compadd -U -V unsorted -a completions\n'
           '    fi\n')
ZSH_ADD_NO_SPACE = ('    if [ -n "$completions_no_space" ]; then\n'
                    "        compadd -S '' -U -V unsorted -a completions_no_space\n"
                    '    fi\n')


# `--opt=VALUE`: boxlite completes VALUE; the candidate replaces the whole word, so
# it gets the `--opt=` back in front
ZSH_OPTION = ('    local -a completions_no_space\n'
              '    local option=""\n'
              '    [[ ${words[CURRENT]} == -*=* ]] && option="${words[CURRENT]%%=*}="\n')
ZSH_LOOP = '        if [[ "$type" == "plain" ]]; then\n'


def _zsh_no_space(source: str) -> str:
    """click's zsh script, with ZSH_NO_SPACE and ZSH_OPTION."""
    assert all(part in source for part in (ZSH_DECLARE, ZSH_PLAIN, ZSH_ADD, ZSH_LOOP))
    return (source.replace(ZSH_DECLARE, ZSH_DECLARE + ZSH_OPTION)
            .replace(ZSH_LOOP, ZSH_LOOP + '            key="$option$key"\n')
            .replace(ZSH_PLAIN, ZSH_NO_SPACE).replace(ZSH_ADD, ZSH_ADD + ZSH_ADD_NO_SPACE))


# bash splits words at `:` and `=` (COMP_WORDBREAKS): `localhost/debian:b` reached
# boxlite as three words. The words are taken from the line as typed instead, and a
# candidate is given without the part of the word before its last `:` or `=` (bash
# replaces only what follows it), as bash-completion's __ltrim_colon_completions does.
BASH_WORDS = """    local line="${COMP_LINE:0:$COMP_POINT}" words cword cur colon=""
    IFS=$' \\t' read -ra words <<< "$line"
    [[ -z $line || $line == *[[:space:]] ]] && words+=("")
    cword=$(( ${#words[@]} - 1 ))
    cur="${words[cword]}" inc="${words[cword]}"
    [[ $cur == -*=* ]] && inc="${cur#*=}"  # (--opt=VALUE: boxlite completes VALUE)
    [[ $inc == *[:=]* ]] && colon="${inc%"${inc##*[:=]}"}"

    response=$(env COMP_WORDS="${words[*]}" COMP_CWORD=$cword _BOXLITE_COMPLETE=bash_complete $1)
"""


def _bash_colons(source: str) -> str:
    words = ('    response=$(env COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD=$COMP_CWORD '
             '_BOXLITE_COMPLETE=bash_complete $1)\n')
    plain = "            COMPREPLY+=($value)\n"
    assert words in source and plain in source
    return source.replace(words, BASH_WORDS).replace(plain, (
        '            COMPREPLY+=("${value#"$colon"}")\n'
        # (cp's `BOX:` goes on with a path inside the box, a filter's `KEY=` with its
        # value, a directory with what is in it, --mount's `VALUE,` with a key: no
        # space after it)
        "            [[ $value == *[:=/,] ]] && compopt -o nospace\n"))


def _roff(text: str) -> str:
    lines = []
    for line in text.replace("\\", "\\e").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _roff_paragraph(text: str) -> str:
    """A paragraph of help in roff; one click keeps as written (it begins with `\\b`:
    examples, a table) is set line by line (.nf), not filled into one line."""
    if not text.startswith("\b"):
        return _roff(text)
    return "\n".join([".nf", _roff(text.removeprefix("\b").strip("\n")), ".fi"])


def _usage(ctx: click.Context, cmd: click.Command) -> str:
    pieces = cmd.collect_usage_pieces(ctx)
    return " ".join([ctx.command_path, *pieces])


def man_page(cmd: click.Command, path: list[str]) -> str:
    """boxlite(1) or boxlite-CMD(1) in roff."""
    name = "-".join(path)
    ctx = click.Context(cmd, info_name=" ".join(path), help_option_names=HELP_OPTIONS)
    help_text = inspect.cleandoc(cmd.help or "")
    # (NAME: the first sentence of the first paragraph, whole, as whatis shows it)
    first = " ".join(help_text.split("\n\n")[0].split())
    summary = re.split(r"(?<=\.)\s", first, maxsplit=1)[0].rstrip(".") if first else ""
    paragraphs = [_roff_paragraph(p) for p in help_text.split("\n\n")]
    out = [
        f'.TH "{name.upper()}" "1" "{MAN_DATE}" "boxlite {__version__}" "boxlite manual"',
        ".SH NAME",
        f"{name} \\- {_roff(summary)}",
        ".SH SYNOPSIS",
        f".B {_roff(_usage(ctx, cmd))}",
        ".SH DESCRIPTION",
        "\n.PP\n".join(paragraphs),
    ]
    options = [p for p in cmd.get_params(ctx) if isinstance(p, click.Option)]
    if options:
        out.append(".SH OPTIONS")
        for opt in options:
            record = opt.get_help_record(ctx)
            if record is None:
                continue
            names, desc = record
            out += [".TP", f".B {_roff(names)}", _roff(desc)]
    if isinstance(cmd, click.Group):
        out.append(".SH COMMANDS")
        for sub in cmd.list_commands(ctx):
            subcmd = cmd.get_command(ctx, sub)
            if subcmd is not None:
                out += [".TP", f".B {sub}", _roff(subcmd.get_short_help_str(80)),
                        f"See \\fB{name}-{sub}\\fR(1)."]
    parent = "-".join(path[:-1])
    out += [".SH SEE ALSO", f"\\fB{parent}\\fR(1)" if len(path) > 1 else "\\fBdocker\\fR(1)"]
    return "\n".join(out) + "\n"


def man_pages() -> dict[str, str]:
    """boxlite(1), and one page per command, at every depth (boxlite-image-ls(1))."""
    from boxlite_cli.cli.app import cli

    pages: dict[str, str] = {}

    def add(cmd: click.Command, path: list[str]) -> None:
        pages["-".join(path) + ".1"] = man_page(cmd, path)
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd, info_name=" ".join(path), help_option_names=HELP_OPTIONS)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    add(sub, [*path, name])

    add(cli, ["boxlite"])
    return pages


def generated_files() -> dict[Path, str]:
    files = {ROOT / "completions" / fname: completion_script(shell)
             for shell, fname in SHELLS.items()}
    files.update({ROOT / "man" / name: text for name, text in man_pages().items()})
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for path, text in generated_files().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if check:
        expected = {p.name for p in generated_files()}
        extra = [p for d in ("completions", "man") for p in (ROOT / d).glob("*")
                 if p.name not in expected]
        stale += [f"{p.relative_to(ROOT)} (no such command any more)" for p in extra]
    if stale:
        print("stale (run: python -m boxlite_cli.cli.docs):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
