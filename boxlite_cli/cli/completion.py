"""Shell completion helpers: the boxes (by status) and images of the current home.

They read the home's records as they are (no process is looked at), fail silently
(a completion never prints an error), and leave out what the command line has
already (`boxlite rm a <TAB>` does not offer a again)."""

from __future__ import annotations

from collections.abc import Callable

import click
from click.shell_completion import CompletionItem

Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]
RUNNING = frozenset({"starting", "running"})
NOT_RUNNING = frozenset({"created", "exited"})


def _given(ctx: click.Context, param: click.Parameter) -> set[str]:
    value = ctx.params.get(param.name or "") or ()
    return {value} if isinstance(value, str) else {str(v) for v in value}


def _offer(ctx: click.Context, param: click.Parameter, incomplete: str,
           candidates: list[str]) -> list[CompletionItem]:
    given = _given(ctx, param)
    return [CompletionItem(c) for c in sorted(set(candidates))
            if c.startswith(incomplete) and c not in given]


def _box_completer(statuses: frozenset[str] | None, paused: bool | None = None) -> Completer:
    """Boxes with one of `statuses` (None: any); `paused`: only those paused, or not."""
    def complete(ctx: click.Context, param: click.Parameter,
                 incomplete: str) -> list[CompletionItem]:
        try:
            from boxlite_cli.state.boxes import BoxStore
            from boxlite_cli.state.paths import home_paths

            names = [item.name for item in BoxStore(home_paths()).all()
                     if not isinstance(item, Exception)
                     and (statuses is None or item.status in statuses)
                     and (paused is None or item.is_paused == paused)]
        except Exception:
            return []
        return _offer(ctx, param, incomplete, names)

    return complete


def complete_copy_end(ctx: click.Context, param: click.Parameter,
                      incomplete: str) -> list[CompletionItem]:
    """One end of a cp: `BOX:` for each box (running or stopped), and host paths (the
    shell's own file completion) unless a box is being named (`web:...`)."""
    if ":" in incomplete:
        return []  # (a path inside a box: nothing to offer from the host)
    # (the file item first: bash's script starts over at it, then adds the boxes; the
    # shell's own file completion is used when no box name matches)
    return [CompletionItem(incomplete, type="file"),
            *(CompletionItem(f"{c.value}:") for c in complete_box(ctx, param, incomplete))]


complete_box = _box_completer(None)  # any box (rm, inspect, logs, ...)
complete_running_box = _box_completer(RUNNING)  # exec, stop, kill, ...
complete_stopped_box = _box_completer(NOT_RUNNING)  # start
complete_unpaused_box = _box_completer(frozenset({"running"}), paused=False)  # pause
complete_paused_box = _box_completer(frozenset({"running"}), paused=True)  # unpause


def complete_image(ctx: click.Context, param: click.Parameter,
                   incomplete: str) -> list[CompletionItem]:
    """The tags of the local store, as docker prints them (alpine:3, not docker.io/...)."""
    try:
        from boxlite_cli.oci.reference import parse_reference
        from boxlite_cli.oci.store import ImageStore
        from boxlite_cli.state.paths import home_paths

        refs = [parse_reference(key).short for key in ImageStore(home_paths().images).tags()
                if "@" not in key]
    except Exception:
        return []
    return _offer(ctx, param, incomplete, refs)
