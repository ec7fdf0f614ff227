"""docker's option spellings that click does not take, rewritten before parsing."""

from __future__ import annotations

import click
import pytest

from boxlite_cli.cli.dockerargs import rewrite


@click.command()
@click.option("--rm", is_flag=True)
@click.option("-d", "--detach", is_flag=True)
@click.option("-e", "--env", multiple=True)
@click.option("--name")
@click.option("--sig-proxy/--no-sig-proxy", default=True)
@click.argument("image")
@click.argument("command", nargs=-1)
def run(**_: object) -> None:
    """A stand-in for `run`."""


@pytest.mark.parametrize(("args", "expected"), [
    (["--rm=true", "img"], ["--rm", "img"]),
    (["--rm=false", "-d=1", "img"], ["-d", "img"]),
    (["--detach=FALSE", "img"], ["img"]),
    (["-e=A=1", "--env=B=2", "img"], ["-e", "A=1", "--env=B=2", "img"]),
    (["--name", "--rm=true", "img"], ["--name", "--rm=true", "img"]),  # (a value)
    (["img", "--rm=true", "-e=A=1"], ["img", "--rm=true", "-e=A=1"]),  # (the box's own)
    (["--", "--rm=true"], ["--", "--rm=true"]),
    (["-it", "--rm=true", "img"], ["-it", "--rm", "img"]),
    # a flag with an off form: false is that form, not the default (which is on)
    (["--sig-proxy=false", "img"], ["--no-sig-proxy", "img"]),
    (["--sig-proxy=true", "img"], ["--sig-proxy", "img"]),
    (["--no-sig-proxy=false", "img"], ["--sig-proxy", "img"]),
])
def test_dockers_spellings_become_clicks(args: list[str], expected: list[str]) -> None:
    assert rewrite(run, args) == expected


def test_a_flag_given_neither_true_nor_false_is_refused() -> None:
    with pytest.raises(click.BadParameter, match="'maybe' is not true or false"):
        rewrite(run, ["--rm=maybe", "img"])
