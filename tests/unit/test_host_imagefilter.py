"""`images --filter` (runtime/imagefilter.py): before= and since= an image, by the time
each was made, as docker's."""

from __future__ import annotations

from typing import Any

import pytest

from boxlite_cli.errors import NotFound, UsageError
from boxlite_cli.oci.reference import parse_reference
from boxlite_cli.oci.store import Image
from boxlite_cli.runtime.imagefilter import parse_image_filters


def image(name: str, created: Any) -> Image:
    return Image(parse_reference(name), "sha256:" + name[-1] * 64, {},
                 {"created": created} if created is not None else {})


OLD = image("localhost/a", "2020-01-01T00:00:00Z")
MID = image("localhost/b", "2023-06-01T12:00:00.5+02:00")
NEW = image("localhost/c", "2026-11-30T00:00:00Z")
UNDATED = image("localhost/d", None)  # (no valid time: the oldest, as docker's zero time)
ALL = [OLD, MID, NEW, UNDATED]


def find(text: str) -> Image:
    for i in ALL:
        if i.reference == parse_reference(text):
            return i
    raise NotFound(f"no such image: {text}")


def names(filters: list[str]) -> list[str]:
    wanted = parse_image_filters(filters)
    wanted.resolve_images(find)
    return [i.reference.repository.rpartition("/")[2] for i in wanted.select(ALL)]


def test_before_and_since_an_image_by_the_time_it_was_made() -> None:
    assert names(["before=localhost/b"]) == ["a", "d"]
    assert names(["since=localhost/b"]) == ["c"]
    assert names(["since=localhost/a", "before=localhost/c"]) == ["b"]
    assert names(["since=localhost/c"]) == []


def test_before_an_image_that_is_not_there_is_no_such_image() -> None:
    with pytest.raises(NotFound, match="no such image: localhost/zz"):
        names(["before=localhost/zz"])
    with pytest.raises(UsageError, match="invalid filter 'until'"):
        parse_image_filters(["until=1h"])
