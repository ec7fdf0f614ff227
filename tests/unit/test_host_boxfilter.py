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


def test_volume_publish_and_expose_filters() -> None:
    """docker's volume= (a volume's name, a bind's host path, or where it is mounted),
    publish= (a box port -p publishes) and expose= (one it exposes or publishes), with a
    protocol (tcp unless said) and port ranges."""
    from boxlite_cli.state.network import NetworkConfig, PortMapping
    from boxlite_cli.state.volumes import BIND, VOLUME, Mount

    web, dns, plain = box("web"), box("dns"), box("plain")
    web.config.mounts = [Mount(VOLUME, "site", "/var/www"), Mount(BIND, "/srv/conf", "/etc/x")]
    web.config.network = NetworkConfig(ports=[PortMapping(80, host_port=8080)])
    web.config.exposed = ["80/tcp", "443/tcp"]
    dns.config.network = NetworkConfig(ports=[PortMapping(53, "udp")])
    boxes = [web, dns, plain]
    for filters, names in (
            (["volume=site"], ["web"]), (["volume=/var/www"], ["web"]),
            (["volume=/srv/conf"], ["web"]), (["volume=/etc/x"], ["web"]), (["volume=x"], []),
            (["publish=80"], ["web"]), (["publish=80/tcp"], ["web"]), (["publish=80/udp"], []),
            (["publish=8080"], []),  # (the box's port, not the host's: docker's)
            (["publish=443"], []), (["expose=443"], ["web"]), (["expose=1-100/TCP"], ["web"]),
            (["publish=53/udp"], ["dns"]), (["expose=50-60/udp"], ["dns"]),
            (["publish=53"], []), (["publish=80", "publish=53/udp"], ["web", "dns"])):
        wanted = parse_filters(filters)
        assert [b.name for b in boxes if wanted.matches(b)] == names, filters
    for bad in ("publish=http", "publish=80/sctp", "expose=90-80", "publish=0", "expose=1-"):
        with pytest.raises(UsageError, match=f"invalid filter '{bad}': use PORT, or FIRST-LAST"):
            parse_filters([bad])


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


def test_ancestor_is_the_image_a_name_means_now() -> None:
    """docker's ancestor=NAME: the image NAME names now, by id. A box made from NAME
    before the tag moved is another image's (it matched by its name); one made from
    another name of that image matches; a name the store lacks matches as written."""
    now_id = "sha256:" + "cd34" * 16
    moved = box("moved")  # (made from localhost/debian:bookworm: image ab12...)
    other_name = box("other", image="registry.example/same:1")
    other_name.config.image_id = now_id
    boxes = [moved, other_name]
    wanted = parse_filters(["ancestor=localhost/debian:bookworm"])
    wanted.resolve_images({"localhost/debian:bookworm": now_id}.get)
    assert [b.name for b in boxes if wanted.matches(b)] == ["other"]
    unknown = parse_filters(["ancestor=localhost/debian:bookworm"])
    unknown.resolve_images(lambda ref: None)
    assert [b.name for b in boxes if unknown.matches(b)] == ["moved"]
