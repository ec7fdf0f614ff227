"""click parameter types whose refusals say what is wanted, in one line."""

from __future__ import annotations

import math

import click

MAX_TIMEOUT_S = 10**9  # (~31 years: what an exported box's manifest may say too)


class Seconds(click.ParamType):
    """A number of seconds, 0 up to MAX_TIMEOUT_S; with `forever`, -1 too (docker's
    "wait for ever"), which becomes MAX_TIMEOUT_S."""

    name = "seconds"

    def __init__(self, forever: bool = False) -> None:
        self.forever = forever

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            seconds = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            seconds = math.nan
        if self.forever and seconds == -1:
            return float(MAX_TIMEOUT_S)
        if not 0 <= seconds <= MAX_TIMEOUT_S:  # (NaN too: every comparison with it is false)
            wanted = f"a number of seconds from 0 to {MAX_TIMEOUT_S}"
            self.fail(f"{value!r} is not {wanted}{', or -1 (for ever)' if self.forever else ''}",
                      param, ctx)
        return seconds


class Count(click.ParamType):
    """A whole number, `least` or more."""

    name = "count"

    def __init__(self, least: int = 0) -> None:
        self.least = least

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        try:
            count = value if isinstance(value, int) else int(str(value), 10)
        except ValueError:
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if count < self.least:
            self.fail(f"{value!r} is less than {self.least}", param, ctx)
        return count
