"""Shell completion helpers: the boxes (by status) and images of the current home.

They read the home's records as they are (no process is looked at), fail silently
(a completion never prints an error), and leave out what the command line has
already (`boxlite rm a <TAB>` does not offer a again)."""

from __future__ import annotations

import os
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
    """One end of a cp: host paths and `BOX:` for each box (running or stopped), unless
    a path in a box is being named (`web:...`)."""
    if ":" in incomplete:
        return []  # (a path inside a box: nothing to offer from the host)
    return _with_host_paths(incomplete, [CompletionItem(f"{c.value}:") for c
                                         in complete_box(ctx, param, incomplete)])


MAX_HOST_PATHS = 200


def _host_paths(incomplete: str) -> list[str]:
    """The host paths that begin with `incomplete` (a directory's with a `/` after it,
    to go on into): listed here, not left to the shell's file completion, which bash's
    script uses only when no other candidate matches. Hidden ones once a `.` is typed."""
    directory, slash, prefix = incomplete.rpartition("/")
    where = (directory or "/") if slash else "."
    try:
        with os.scandir(os.path.expanduser(where)) as entries:
            found = []
            for entry in entries:
                if not entry.name.startswith(prefix) or (
                        entry.name.startswith(".") and not prefix.startswith(".")):
                    continue
                path = f"{directory}{slash}{entry.name}"
                found.append(path + "/" if entry.is_dir() else path)
                if len(found) >= MAX_HOST_PATHS:
                    break
    except OSError:
        return []
    return sorted(found)


def _with_host_paths(incomplete: str, items: list[CompletionItem]) -> list[CompletionItem]:
    """The host paths that `incomplete` begins, then `items`."""
    return [*(CompletionItem(p) for p in _host_paths(incomplete)), *items]


complete_box = _box_completer(None)  # any box (rm, inspect, logs, ...)
complete_running_box = _box_completer(RUNNING)  # exec, stop, kill, ...
complete_stopped_box = _box_completer(NOT_RUNNING)  # start
complete_unpaused_box = _box_completer(frozenset({"running"}), paused=False)  # pause
complete_paused_box = _box_completer(frozenset({"running"}), paused=True)  # unpause


def _listed(names: Callable[[], list[str]]) -> Completer:
    """A completer offering what `names()` lists (nothing when it fails)."""
    def complete(ctx: click.Context, param: click.Parameter,
                 incomplete: str) -> list[CompletionItem]:
        try:
            candidates = names()
        except Exception:
            return []
        return _offer(ctx, param, incomplete, candidates)

    return complete


def _image_references() -> list[str]:
    """The tags of the local store, as docker prints them (alpine:3, not docker.io/...)."""
    from boxlite_cli.oci.reference import parse_reference
    from boxlite_cli.oci.store import ImageStore
    from boxlite_cli.state.paths import home_paths

    return [parse_reference(key).short for key in ImageStore(home_paths().images).tags()
            if "@" not in key]


def _volume_names() -> list[str]:
    from boxlite_cli.state.paths import home_paths
    from boxlite_cli.state.volumes import VolumeStore

    return [v.name for v in VolumeStore(home_paths().data / "volumes").all()]


def _snapshots(box: str | None) -> list[tuple[str, str, bool]]:
    """(box name, snapshot name, has memory) of BOX's snapshots (None: every box's),
    those a command made for itself (a clone's base) left out."""
    from boxlite_cli.disks.chain import BoxDisks
    from boxlite_cli.state.boxes import BoxStore
    from boxlite_cli.state.paths import home_paths

    store = BoxStore(home_paths())
    boxes = [item for item in store.all() if not isinstance(item, Exception)]
    if box is not None:
        box_id = store.resolve(box)
        boxes = [b for b in boxes if b.id == box_id]
    return [(b.name, snap.name, bool(snap.memory))
            for b in boxes for snap in BoxDisks(store.box_dir(b.id) / "disks").all()
            if snap.owner is None]


def complete_snapshot(ctx: click.Context, param: click.Parameter,
                      incomplete: str) -> list[CompletionItem]:
    """The snapshots of the BOX named before (`snapshot rm web <TAB>`)."""
    box = str(ctx.params.get("box") or "")
    return _listed(lambda: [snap for _, snap, _ in _snapshots(box)])(ctx, param, incomplete)


complete_image = _listed(_image_references)


def complete_box_or_image(ctx: click.Context, param: click.Parameter,
                          incomplete: str) -> list[CompletionItem]:
    """inspect's: boxes, then images, as its --type allows."""
    kind = ctx.params.get("kind")
    boxes = complete_box(ctx, param, incomplete) if kind != "image" else []
    images = complete_image(ctx, param, incomplete) if kind in (None, "image") else []
    return [*boxes, *images]
# the named volumes (anonymous ones too: `volume rm` takes them)
complete_volume = _listed(_volume_names)


def complete_volume_flag(ctx: click.Context, param: click.Parameter,
                         incomplete: str) -> list[CompletionItem]:
    """-v's source: a host path or a volume (the path in the box after `:` is the
    box's, none to offer)."""
    if ":" in incomplete:
        return []  # (`:` follows a volume's name: the path in the box goes on there)
    return _with_host_paths(incomplete, [CompletionItem(f"{c.value}:") for c
                                         in complete_volume(ctx, param, incomplete)])


MOUNT_KEYS = ("type=", "source=", "target=", "readonly", "tmpfs-size=", "tmpfs-mode=")
MOUNT_TYPES = ("bind", "volume", "tmpfs")


def complete_mount(ctx: click.Context, param: click.Parameter,
                   incomplete: str) -> list[CompletionItem]:
    """--mount's KEY=VALUE list: the keys not given yet; the types after `type=`; after
    `source=`, a volume mount's volumes or a bind mount's host paths."""
    head, _, last = incomplete.rpartition(",")
    head = head + "," if head else ""
    key, eq, value = last.partition("=")
    given = {part.partition("=")[0] for part in head.split(",")}
    if not eq:
        candidates = [k for k in MOUNT_KEYS if k.rstrip("=") not in given]
    elif key == "type":  # (a `,` after a value: the next key goes on there)
        candidates = [f"type={t}," for t in MOUNT_TYPES]
    elif key in ("source", "src") and "type=bind" in head:
        candidates = [f"{key}={p}" for p in _host_paths(value)]
    elif key in ("source", "src") and "type=tmpfs" not in head:
        candidates = [f"{key}={c.value}," for c in complete_volume(ctx, param, value)]
    else:
        return []
    return [CompletionItem(head + c) for c in candidates if c.startswith(last)]


def _filter_completer(keys: tuple[str, ...],
                      values: dict[str, Callable[[], list[str]]]) -> Completer:
    """A listing's --filter KEY=VALUE: `keys` (KEY=), then the values `values[KEY]()`
    lists (nothing when it fails)."""
    def complete(ctx: click.Context, param: click.Parameter,
                 incomplete: str) -> list[CompletionItem]:
        key, eq, _ = incomplete.partition("=")
        if not eq:
            return [CompletionItem(f"{k}=") for k in keys if k.startswith(incomplete)]
        try:
            candidates = [f"{key}={v}" for v in values[key]()] if key in values else []
        except Exception:
            return []
        return [CompletionItem(c) for c in sorted(set(candidates)) if c.startswith(incomplete)]

    return complete


def _box_names() -> list[str]:
    from boxlite_cli.state.boxes import BoxStore
    from boxlite_cli.state.paths import home_paths

    return [item.name for item in BoxStore(home_paths()).all() if not isinstance(item, Exception)]


def _box_filter_completer() -> Completer:
    from boxlite_cli.runtime.boxfilter import KEYS, STATUSES
    from boxlite_cli.state.health import HEALTH_STATES

    return _filter_completer(KEYS, {
        "status": lambda: list(STATUSES), "health": lambda: list(HEALTH_STATES),
        "name": _box_names, "before": _box_names, "since": _box_names,
        "ancestor": _image_references, "volume": _volume_names})


def complete_box_filter(ctx: click.Context, param: click.Parameter,
                        incomplete: str) -> list[CompletionItem]:
    """ps --filter: its keys, then statuses, healths, boxes or images as the key takes."""
    return _box_filter_completer()(ctx, param, incomplete)


def complete_image_filter(ctx: click.Context, param: click.Parameter,
                          incomplete: str) -> list[CompletionItem]:
    """images --filter: its keys, then true/false or images as the key takes."""
    from boxlite_cli.runtime.imagefilter import KEYS

    return _filter_completer(KEYS, {
        "dangling": lambda: ["true", "false"], "reference": _image_references,
        "before": _image_references, "since": _image_references})(ctx, param, incomplete)


complete_volume_filter = _filter_completer(("dangling", "name"), {
    "dangling": lambda: ["true", "false"], "name": _volume_names})


class BoxCommandLine(click.Command):
    """A command whose last argument is a command line for the box (run IMAGE COMMAND,
    exec BOX COMMAND): once the arguments before it are given, completion offers no
    option of boxlite's, what follows being the box's (`run img ls --<TAB>`)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        if ctx.resilient_parsing and self._box_command_began(ctx):
            return [p for p in params if isinstance(p, click.Argument)]
        return params

    def _box_command_began(self, ctx: click.Context) -> bool:
        before = [p for p in self.params if isinstance(p, click.Argument)][:-1]
        return bool(before) and all(ctx.params.get(p.name or "") for p in before)
# `start --checkpoint`: the memory checkpoints of any box (the box comes after)
complete_checkpoint = _listed(lambda: [snap for _, snap, memory in _snapshots(None) if memory])
# `run --from`: BOX:NAME for every memory checkpoint
complete_box_checkpoint = _listed(lambda: [f"{box}:{snap}" for box, snap, memory
                                           in _snapshots(None) if memory])


def complete_signal(ctx: click.Context, param: click.Parameter,
                    incomplete: str) -> list[CompletionItem]:
    """Signal names, as docker takes them (TERM, or SIGTERM once `SIG` is typed)."""
    import signal

    names = sorted({s.name for s in signal.Signals if not s.name.startswith("SIGRT")})
    if not incomplete.upper().startswith("SIG"):
        names = [n.removeprefix("SIG") for n in names]
    return [CompletionItem(n) for n in names if n.startswith(incomplete.upper())]
