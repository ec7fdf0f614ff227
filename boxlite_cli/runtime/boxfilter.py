"""`ps --filter KEY=VALUE` (docker's): which boxes a listing keeps.

Filters of one key are alternatives (any may match), except labels, which all have to
match; filters of different keys all have to match, as in docker. Keys: id (a prefix),
name (a regular expression found in it: `^web$` is that name alone), status (created,
running, paused, exited, restarting (waiting for its restart policy's start); docker's
dead and removing match none),
exited (an exit code), ancestor (the image reference or id the box was made from),
label (KEY or KEY=VALUE), health (starting, healthy, unhealthy, or none: no health
check), before and since (a box, by name or id: those created before it, or after it;
`resolve_boxes` finds it), volume (a volume's name, a bind's host path, or where either
is mounted in the box), publish and expose (a box port, or a range of them, with /tcp
or /udp: tcp when not said; publish: a port -p publishes, expose: one the box exposes
or publishes)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from boxlite_cli.errors import UsageError
from boxlite_cli.oci.reference import parse_reference
from boxlite_cli.state.health import HEALTH_STATES, NO_HEALTHCHECK
from boxlite_cli.state.records import BoxState, Status

STATUSES = (*(s.value for s in Status), "paused", "dead", "restarting", "removing")
KEYS = ("id", "name", "status", "exited", "ancestor", "label", "health", "before", "since",
        "volume", "publish", "expose")
PORT_KEYS = ("publish", "expose")
PROTOS = ("tcp", "udp")
BY_BOX = ("before", "since")  # (their values: a box, then its creation time)
ALL_OF = frozenset({"label"})  # (docker's: label=a -f label=b is a box with both)


def _status(state: BoxState) -> str:
    if state.is_restarting:
        return "restarting"
    return "paused" if state.is_paused else state.status.value


def health_status(state: BoxState) -> str:
    """The box's health (docker's: a stopped box keeps its last); none: no check."""
    return state.health.status if state.health is not None else NO_HEALTHCHECK


def _same_image(state: BoxState, wanted: str) -> bool:
    if state.config.image_id.removeprefix("sha256:").startswith(wanted.removeprefix("sha256:")):
        return len(wanted.removeprefix("sha256:")) >= 4  # (an id prefix, docker's shortest)
    try:
        return parse_reference(wanted).short == parse_reference(state.config.image).short
    except UsageError:
        return False


def _label(state: BoxState, wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    labels = state.config.labels
    return key in labels and (not sep or labels[key] == value)


def _volume(state: BoxState, wanted: str) -> bool:
    return any(wanted in (m.source, m.target) for m in state.config.mounts)


def port_filter(key: str, value: str) -> tuple[int, int, str]:
    """`PORT[/PROTO]` or `FIRST-LAST[/PROTO]` of publish= and expose= (tcp by default):
    (first, last, proto); a UsageError when it is none."""
    ports, _, proto = value.partition("/")
    proto = proto.lower() or "tcp"
    first, dash, last = ports.partition("-")
    if (proto not in PROTOS or not first.isdigit() or (dash and not last.isdigit())
            or not 1 <= int(first) <= int(last if dash else first) <= 65535):
        raise UsageError(f"invalid filter '{key}={value}': use PORT, or FIRST-LAST, with "
                         "/tcp or /udp")
    return int(first), int(last if dash else first), proto


def _ports(state: BoxState, wanted: str, exposed: bool) -> bool:
    first, last, proto = port_filter("", wanted)
    have = {(m.box_port, m.proto) for m in state.config.network.ports}
    if exposed:
        for key in state.config.exposed:
            port, _, its_proto = key.partition("/")
            if port.isdigit():
                have.add((int(port), its_proto or "tcp"))
    return any(first <= port <= last and its_proto == proto for port, its_proto in have)


def _exited(state: BoxState, wanted: str) -> bool:
    return state.status == Status.EXITED and str(state.exit_code) == wanted


TESTS: dict[str, Callable[[BoxState, str], bool]] = {
    "id": lambda state, wanted: state.id.startswith(wanted),
    "name": lambda state, wanted: re.search(wanted, state.name) is not None,
    "status": lambda state, wanted: _status(state) == wanted,
    "exited": _exited,
    "ancestor": _same_image,
    "label": _label,
    "health": lambda state, wanted: health_status(state) == wanted,
    "before": lambda state, wanted: state.created_at < float(wanted),
    "since": lambda state, wanted: state.created_at > float(wanted),
    "volume": _volume,
    "publish": lambda state, wanted: _ports(state, wanted, exposed=False),
    "expose": lambda state, wanted: _ports(state, wanted, exposed=True),
}


@dataclass
class BoxFilter:
    """Parsed filters: key → the values given for it."""

    wanted: dict[str, list[str]] = field(default_factory=dict)

    @property
    def needs_all(self) -> bool:
        """A filter on a state that is not running lists stopped boxes too (docker's)."""
        return "exited" in self.wanted or any(v != "running" for v in self.wanted.get("status", []))

    def resolve_boxes(self, created_at: Callable[[str], float]) -> None:
        """before= and since=: the box each names (`created_at(ref)`, which raises
        NoSuchBox for none) as its creation time."""
        for key in BY_BOX:
            if key in self.wanted:
                self.wanted[key] = [repr(created_at(ref)) for ref in self.wanted[key]]

    def resolve_images(self, image_id: Callable[[str], str | None]) -> None:
        """ancestor=: a name the store has is the image it names now, by id (docker's:
        a box made from a name that moved since is another image's); one it has not is
        matched as written (an imported box's image)."""
        if "ancestor" in self.wanted:
            self.wanted["ancestor"] = [image_id(ref) or ref for ref in self.wanted["ancestor"]]

    def matches(self, state: BoxState) -> bool:
        """Every key matches: one of its values, or every one for a key of ALL_OF."""
        return all((all if key in ALL_OF else any)(TESTS[key](state, v) for v in values)
                   for key, values in self.wanted.items())


def split_filter(item: str, keys: Sequence[str]) -> tuple[str, str]:
    """One `KEY=VALUE` of a listing's --filter (docker's), its key one of `keys`; a
    UsageError names a malformed one or an unknown key."""
    key, sep, value = item.partition("=")
    key = key.strip().lower()
    if not sep or not value:
        raise UsageError(f"invalid filter {item!r}: use KEY=VALUE", hint=f"keys: {', '.join(keys)}")
    if key not in keys:
        raise UsageError(f"invalid filter {key!r}", hint=f"keys: {', '.join(keys)}")
    return key, value


def bool_filter(key: str, value: str) -> bool:
    """A filter's true|false (docker takes 1|0 too); a UsageError otherwise."""
    if value.lower() not in ("true", "false", "1", "0"):
        raise UsageError(f"invalid filter '{key}={value}': use true or false")
    return value.lower() in ("true", "1")


def parse_filters(items: Sequence[str]) -> BoxFilter:
    """`KEY=VALUE` each; a UsageError names a malformed one or an unknown key."""
    parsed = BoxFilter()
    for item in items:
        key, value = split_filter(item, KEYS)
        if key == "label" and value.startswith("="):
            raise UsageError(f"invalid filter {item!r}: the label's name is empty",
                             hint="use label=KEY or label=KEY=VALUE")
        if key == "status" and value not in STATUSES:
            raise UsageError(f"invalid filter 'status={value}'",
                             hint=f"a status is one of: {', '.join(STATUSES)}")
        if key == "health" and value not in HEALTH_STATES:
            raise UsageError(f"invalid filter 'health={value}'",
                             hint=f"a health is one of: {', '.join(HEALTH_STATES)}")
        if key == "name":
            try:
                re.compile(value)
            except re.error as e:
                raise UsageError(f"invalid filter 'name={value}': {e}") from None
        if key in PORT_KEYS:
            port_filter(key, value)
        if key == "exited" and not value.lstrip("-").isdigit():
            raise UsageError(f"invalid filter 'exited={value}': an exit code is a number")
        parsed.wanted.setdefault(key, []).append(value)
    return parsed
