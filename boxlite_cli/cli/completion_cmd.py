"""boxlite completion: print the shell completion script."""

from __future__ import annotations

import click


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> int:
    """Print the completion script for SHELL.

    \b
    bash: boxlite completion bash > /etc/bash_completion.d/boxlite
    zsh:  boxlite completion zsh > "${fpath[1]}/_boxlite"
    fish: boxlite completion fish > ~/.config/fish/completions/boxlite.fish
    """
    from boxlite_cli.cli.docs import completion_script

    click.echo(completion_script(shell), nl=False)
    return 0
