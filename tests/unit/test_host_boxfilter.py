"""ps --filter: docker's keys and how several combine."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.runtime.boxfilter import parse_filters
from boxlite_cli.runtime.spec import parse_labels
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status


def box(name: str, status: Status = Status.RUNNING, exit_code: int | None = None,
        image: str = "localhost/debian:bookworm", labels: dict[str, str] | None = None,
        paused: bool = False) -> BoxState:
    return BoxState(id=name.ljust(64, "0"), name=name, status=status, exit_code=exit_code,
                    paused=paused,
                    config=BoxConfig(image=image, image_id="sha256:" + "ab12" * 16,
                                     rootfs_base="", process=ProcessSpec(argv=["true"]),
                                     labels=labels or {}))


BOXES = [
    box("web1", labels={"app": "web", "tier": "front"}),
    box("web2", Status.EXITED, 0, labels={"app": "web"}),
    box("db", Status.EXITED, 3, image="registry.example/pg:16", labels={"app": "db"}),
    box("idle", paused=True),
    box("fresh", Status.CREATED),
]


@pytest.mark.parametrize(("filters", "names"), [
    ([], ["web1", "web2", "db", "idle", "fresh"]),
    (["name=web"], ["web1", "web2"]),
    (["name=^web1$"], ["web1"]),
    (["name=web[2-9]"], ["web2"]),
    (["status=dead"], []),  # (docker's: none here)
    (["id=db"], ["db"]),
    (["status=exited"], ["web2", "db"]),
    (["status=paused"], ["idle"]),
    (["status=running"], ["web1"]),
    (["status=running", "status=created"], ["web1", "fresh"]),  # one key: either
    (["exited=3"], ["db"]),
    (["label=app"], ["web1", "web2", "db"]),
    (["label=app=web"], ["web1", "web2"]),
    (["label=app=web", "status=exited"], ["web2"]),  # two keys: both
    (["label=app=web", "label=tier"], ["web1"]),  # (labels: every one, as docker's)
    (["ancestor=registry.example/pg:16"], ["db"]),
    (["ancestor=localhost/debian:bookworm"], ["web1", "web2", "idle", "fresh"]),
    (["ancestor=sha256:ab12ab12"], ["web1", "web2", "db", "idle", "fresh"]),
    (["ancestor=ab1"], []),  # (too short for an id prefix, and no such image)
])
def test_filters(filters: list[str], names: list[str]) -> None:
    wanted = parse_filters(filters)
    assert [b.name for b in BOXES if wanted.matches(b)] == names


def test_a_filter_on_a_stopped_state_lists_stopped_boxes() -> None:
    assert parse_filters(["status=exited"]).needs_all
    assert parse_filters(["exited=0"]).needs_all
    assert not parse_filters(["status=running", "name=x"]).needs_all


@pytest.mark.parametrize(("item", "says"), [
    ("name", "invalid filter 'name': use KEY=VALUE"),
    ("name=", "use KEY=VALUE"),
    ("colour=red", "invalid filter 'colour'"),
    ("status=asleep", "invalid filter 'status=asleep'"),
    ("label==x", "invalid filter 'label==x': the label's name is empty"),
    ("exited=x", "an exit code is a number"),
    ("name=web[", "invalid filter 'name=web\\['"),
])
def test_bad_filters_are_one_line_errors(item: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_filters([item])


def test_labels() -> None:
    assert parse_labels(["a=1", "b", "c=x=y", "a=2"]) == {"a": "2", "b": "", "c": "x=y"}
    with pytest.raises(UsageError, match="invalid label '=v'"):
        parse_labels(["=v"])
    with pytest.raises(UsageError, match="more than 64 KiB"):
        parse_labels([f"k{i}={'v' * 1000}" for i in range(70)])
