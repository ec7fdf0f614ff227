"""Image references are normalised exactly like docker does it."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.oci.reference import Reference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), [
    ("debian", "docker.io", "library/debian", "latest", None),
    ("debian:bookworm", "docker.io", "library/debian", "bookworm", None),
    ("library/debian:12", "docker.io", "library/debian", "12", None),
    ("docker.io/debian", "docker.io", "library/debian", "latest", None),
    ("docker.io/library/debian:bookworm", "docker.io", "library/debian", "bookworm", None),
    ("bitnami/redis", "docker.io", "bitnami/redis", "latest", None),
    ("localhost/debian:bookworm", "localhost", "debian", "bookworm", None),
    ("localhost:5000/debian", "localhost:5000", "debian", "latest", None),
    ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", None),
    ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", "latest", None),
    ("ghcr.io/org/team/tool:v1.2.3-rc_1", "ghcr.io", "org/team/tool", "v1.2.3-rc_1", None),
    ("my-registry.example.com/x__y/z.w-v", "my-registry.example.com", "x__y/z.w-v", "latest",
     None),
    (f"debian@{DIGEST}", "docker.io", "library/debian", None, DIGEST),
    (f"debian:bookworm@{DIGEST}", "docker.io", "library/debian", "bookworm", DIGEST),
    (f"127.0.0.1:5000/a/b@{DIGEST}", "127.0.0.1:5000", "a/b", None, DIGEST),
    ("[::1]:5000/a/b:t", "[::1]:5000", "a/b", "t", None),  # (an IPv6 registry, as docker's)
    ("[fd00::1]/a", "[fd00::1]", "a", "latest", None),
    (f"[::ffff:127.0.0.1]:443/a@{DIGEST}", "[::ffff:127.0.0.1]:443", "a", None, DIGEST),
])
def test_normalisation(text: str, registry: str, repository: str, tag: str | None,
                       digest: str | None) -> None:
    ref = parse_reference(text)
    assert ref == Reference(registry, repository, tag, digest)


def test_str_is_fully_qualified_and_round_trips() -> None:
    ref = parse_reference("debian")
    assert str(ref) == "docker.io/library/debian:latest"
    assert ref.name == "docker.io/library/debian"
    assert parse_reference(str(ref)) == ref
    pinned = parse_reference(f"127.0.0.1:5000/a/b:t@{DIGEST}")
    assert str(pinned) == f"127.0.0.1:5000/a/b:t@{DIGEST}"
    assert parse_reference(str(pinned)) == pinned


def test_legacy_index_hostname_is_docker_io() -> None:
    # docker: `index.docker.io/debian` and `debian` name the same image.
    assert parse_reference("index.docker.io/debian") == parse_reference("debian")


@pytest.mark.parametrize(("text", "short"), [
    ("debian", "debian:latest"),
    ("docker.io/library/debian:bookworm", "debian:bookworm"),
    ("bitnami/redis:7", "bitnami/redis:7"),
    ("localhost/debian:bookworm", "localhost/debian:bookworm"),
    ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t"),
    (f"debian@{DIGEST}", f"debian@{DIGEST}"),
])
def test_short_form_drops_only_the_docker_hub_prefix(text: str, short: str) -> None:
    assert parse_reference(text).short == short


@pytest.mark.parametrize("text", [
    "Debian",
    "library/Debian",
    "foo/Bar:latest",
    "127.0.0.1:5000/A/b",
])
def test_uppercase_repository_is_rejected(text: str) -> None:
    with pytest.raises(UsageError, match="lowercase"):
        parse_reference(text)


@pytest.mark.parametrize("text", [
    "127.0.0.1:5000//bb", "127.0.0.1:5000/bb/", "127.0.0.1:5000/-bb", "127.0.0.1:5000/b..b",
])
def test_a_malformed_lowercase_repository_is_not_blamed_on_case(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_reference(text)
    assert "lowercase letters and digits" in caught.value.message
    assert "must be lowercase" not in caught.value.message


@pytest.mark.parametrize("text", [
    "debian:",
    "debian:-dash-first",
    "debian:.dot-first",
    "debian:" + "t" * 129,
    "debian:tag!",
    "debian:t\u00e4g",  # docker's \w is ASCII only
])
def test_bad_tags_are_rejected(text: str) -> None:
    with pytest.raises(UsageError, match="invalid reference format"):
        parse_reference(text)


@pytest.mark.parametrize("text", [
    "debian:bad/tag",  # `debian:bad` would be a registry whose port is not a number
    "localhost:/debian",
    "-bad.example.com/debian",
    "bad..example.com/debian",
    "example.com:5000:6000/debian",
    "[::1/a",
    "[::g]:5000/a",
    "[]:5000/a",
    "[::1]x/a",
    "[127.0.0.1]/a",
])
def test_malformed_registry_is_rejected(text: str) -> None:
    with pytest.raises(UsageError, match="invalid reference format"):
        parse_reference(text)


def test_longest_tag_is_accepted() -> None:
    assert parse_reference("debian:" + "t" * 128).tag == "t" * 128


@pytest.mark.parametrize("text", [
    "",
    " debian",
    "deb ian",
    "debian\n",
    "debian:1\n",
    "reg.lan:5000\n/debian",
    "debian@sha256:" + "ab" * 32 + "\n",
    "debian@sha256:abc",
    "debian@sha256:" + "AB" * 32,
    "debian@md5:" + "ab" * 16,
    "debian@",
    "/debian",
    "debian/",
    "a//b",
    "-debian",
    "debian-",
    "deb..ian",
    "x" * 513,
])
def test_malformed_references_are_rejected(text: str) -> None:
    with pytest.raises(UsageError):
        parse_reference(text)
