"""`images --filter KEY=VALUE` and `images [REPOSITORY[:TAG]]` (docker's): which images a
listing keeps.

Keys: dangling (true: the images no tag names at all, listed as `<none>`; false: the
tagged ones, every row of theirs: docker's, by image, not by row),
reference (a name pattern, shell-style: `debian`, `deb*`, `debian:12*`, matched against
the short and the full name, with and without the tag), label (KEY or KEY=VALUE of the
image's config), before and since (an image: those created before or after it). Filters
of one key are alternatives, except labels (all of them); of different keys, all have
to match, as in docker."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from boxlite_cli.oci.reference import Reference
from boxlite_cli.oci.store import Image, rfc3339_time
from boxlite_cli.runtime.boxfilter import bool_filter, split_filter

KEYS = ("dangling", "reference", "label", "before", "since")
ALL_OF = frozenset({"label"})
BY_IMAGE = ("before", "since")  # (their values name an image: resolve_images)


def _names(image: Image) -> list[str]:
    """What a reference pattern is matched against: short and full names, with the tag."""
    ref = image.reference
    short = Reference(ref.registry, ref.repository, None, None).short
    names = [short, ref.name]
    if ref.tag:
        names += [f"{short}:{ref.tag}", f"{ref.name}:{ref.tag}"]
    return names


def _reference(image: Image, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for name in _names(image))


def _label(image: Image, wanted: str) -> bool:
    config = image.config.get("config")
    labels = config.get("Labels") if isinstance(config, dict) else None
    key, sep, value = wanted.partition("=")
    return isinstance(labels, dict) and key in labels and (not sep or labels[key] == value)


def created(image: Image) -> float:
    """When the image was made (its config's `created`; 0 without a valid one)."""
    return rfc3339_time(image.config.get("created")) or 0.0


TESTS: dict[str, Callable[[Image, str], bool]] = {
    "reference": _reference,
    "label": _label,
    "before": lambda image, when: created(image) < float(when),
    "since": lambda image, when: created(image) > float(when),
}


@dataclass
class ImageFilter:
    wanted: dict[str, list[str]] = field(default_factory=dict)

    def matches(self, image: Image, tagged: Collection[str] = ()) -> bool:
        """`tagged`: the ids of the images some tag names (for dangling=)."""
        return all((all if key in ALL_OF else any)(
            (image.id not in tagged) == (v == "true") if key == "dangling" else TESTS[key](image, v)
            for v in values) for key, values in self.wanted.items())

    def resolve_images(self, find: Callable[[str], Image]) -> None:
        """before= and since=: the image each names (`find(text)`, which raises
        NotFound for none) as the time it was made."""
        for key in BY_IMAGE:
            if key in self.wanted:
                self.wanted[key] = [repr(created(find(text))) for text in self.wanted[key]]

    def select(self, images: list[Image]) -> list[Image]:
        """The rows of a listing (store.all()) that match."""
        tagged = {i.id for i in images if i.reference.tag} if "dangling" in self.wanted else ()
        return [i for i in images if self.matches(i, tagged)]


def parse_image_filters(items: Sequence[str], reference: str | None = None) -> ImageFilter:
    """`KEY=VALUE` each, and the REPOSITORY[:TAG] argument as a reference filter; a
    UsageError names a malformed one or an unknown key."""
    parsed = ImageFilter()
    for item in items:
        key, value = split_filter(item, KEYS)
        if key == "dangling":
            value = "true" if bool_filter(key, value) else "false"
        parsed.wanted.setdefault(key, []).append(value)
    if reference:
        parsed.wanted.setdefault("reference", []).append(reference)
    return parsed
