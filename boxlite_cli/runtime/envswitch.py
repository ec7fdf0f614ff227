"""Settings in the environment that are on or off: BOXLITE_SPARES, BOXLITE_WARM."""

from __future__ import annotations

import os

from boxlite_cli.errors import UsageError


def env_switch(name: str) -> bool:
    """`name`: 1 (the default, as an empty value) or 0; anything else is refused, so a
    misspelt value is not taken silently for either."""
    value = os.environ.get(name, "").strip() or "1"
    if value not in ("0", "1"):
        raise UsageError(f"invalid {name}={value!r}", hint="use 1 (the default) or 0")
    return value == "1"
