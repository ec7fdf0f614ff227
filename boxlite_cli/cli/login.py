"""boxlite login / logout: registry credentials, kept 0600 in the config dir."""

from __future__ import annotations

import sys

import click

from boxlite_cli.cli.context import CliContext, pass_cli, warn
from boxlite_cli.errors import UsageError
from boxlite_cli.oci.credentials import Credentials
from boxlite_cli.oci.reference import DEFAULT_REGISTRY


def _password(password: str | None, password_stdin: bool) -> str:
    if password_stdin:
        if password is not None:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        return sys.stdin.readline().rstrip("\r\n")
    if password is not None:
        warn("using --password on the command line is insecure; use --password-stdin")
        return password
    if not sys.stdin.isatty():
        raise UsageError("cannot prompt for a password: stdin is not a terminal",
                         hint="use --password-stdin")
    return str(click.prompt("Password", hide_input=True, err=True))


@click.command()
@click.option("-u", "--username", help="User name.")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.argument("server", required=False, default=DEFAULT_REGISTRY)
@pass_cli
def login(cli: CliContext, username: str | None, password: str | None, password_stdin: bool,
          server: str) -> int:
    """Log in to a registry (docker.io when SERVER is omitted).

    The credentials are checked against the registry, then saved in auth.json in
    boxlite's config dir (mode 0600). Credentials in ~/.docker/config.json are used
    without logging in again.
    """
    if not username:
        if password_stdin or not sys.stdin.isatty():
            raise UsageError("a username is required", hint="pass -u USERNAME")
        username = str(click.prompt("Username", err=True))
    secret = _password(password, password_stdin)
    if not secret:
        raise UsageError("the password is empty")
    cli.runtime.image_ops.login(server, Credentials(username, secret))
    click.echo("Login Succeeded")
    return 0


@click.command()
@click.argument("server", required=False, default=DEFAULT_REGISTRY)
@pass_cli
def logout(cli: CliContext, server: str) -> int:
    """Remove the saved credentials of a registry (docker.io when SERVER is omitted)."""
    registry, removed, docker_has = cli.runtime.image_ops.logout(server)
    click.echo(f"Removing login credentials for {registry}" if removed
               else f"Not logged in to {registry}")
    if docker_has:
        warn(f"docker's login to {registry} (its config.json, or a credential helper it "
             f"names) still gives credentials, which pulls and pushes use; to stop that: "
             f"docker logout {registry}")
    return 0
