"""Shell completion helpers: box names for commands that take a box."""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem


def complete_box(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Names (and ids) of the boxes of the current home."""
    try:
        from boxlite_cli.state.boxes import BoxStore
        from boxlite_cli.state.paths import home_paths

        store = BoxStore(home_paths())
        names = []
        for item in store.all():
            if not isinstance(item, Exception):
                names.append(item.name)
    except Exception:
        return []
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]
