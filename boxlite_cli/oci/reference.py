"""Docker/OCI image references: `[registry/]repo[:tag][@sha256:digest]`."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from boxlite_cli.errors import UsageError

DEFAULT_REGISTRY = "docker.io"
LEGACY_REGISTRY = "index.docker.io"
DEFAULT_TAG = "latest"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}\Z", re.ASCII)
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY_RE = re.compile(rf"^{_HOST_PART}(?:\.{_HOST_PART})*(?::[0-9]+)?\Z")
_IPV6_REGISTRY_RE = re.compile(r"^\[([0-9a-fA-F:.]+)\](?::[0-9]+)?\Z")  # ([::1]:5000, docker's)
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
# The name the store keeps an image under that was loaded without one (`docker save
# IMAGE_ID` writes none): `.invalid` is reserved (RFC 2606), so no registry has it.
UNNAMED_REGISTRY = "boxlite.invalid"
UNNAMED_REPOSITORY = "unnamed"


@dataclass(frozen=True)
class Reference:
    """A fully-qualified image reference."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def unnamed(self) -> bool:
        """Whether this is the store's key of an image that has no name (docker's `<none>`)."""
        return (self.registry, self.repository) == (UNNAMED_REGISTRY, UNNAMED_REPOSITORY)

    @property
    def short(self) -> str:
        """The form docker prints: no docker.io/library/ prefix (an unnamed image's: its digest)."""
        if self.unnamed:
            return self.digest or "<none>"
        s = str(self)
        for prefix in (f"{DEFAULT_REGISTRY}/library/", f"{DEFAULT_REGISTRY}/"):
            if s.startswith(prefix):
                return s[len(prefix):]
        return s


def _is_registry(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost" or part != part.lower()


def is_registry_name(text: str) -> bool:
    """`host[:port]` or `[IPv6][:port]`, as a reference's registry part is written."""
    return bool(_REGISTRY_RE.match(text)) or _is_ipv6_registry(text)


def _is_ipv6_registry(part: str) -> bool:
    """`[IPv6]` or `[IPv6]:PORT`, the address a real one."""
    match = _IPV6_REGISTRY_RE.match(part)
    if match is None:
        return False
    try:
        ipaddress.IPv6Address(match.group(1))
    except ValueError:
        return False
    return True


def parse_reference(text: str) -> Reference:
    """Parse and normalise a reference the way docker does."""
    if not text or len(text) > 512 or any(c.isspace() for c in text):
        raise UsageError(f"invalid reference format: {text!r}")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise UsageError(f"invalid reference format: {text!r}: bad digest")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise UsageError(f"invalid reference format: {text!r}: bad tag")
    first, _, remainder = rest.partition("/")
    if remainder and _is_registry(first):
        registry, repo = first, remainder
        if not (_REGISTRY_RE.match(registry) or _is_ipv6_registry(registry)):
            raise UsageError(f"invalid reference format: {text!r}: bad registry {registry!r}")
        if registry == LEGACY_REGISTRY:
            registry = DEFAULT_REGISTRY
    else:
        registry, repo = DEFAULT_REGISTRY, rest
    if registry == DEFAULT_REGISTRY and "/" not in repo:
        repo = f"library/{repo}"
    if not _REPO_RE.match(repo):
        why = ("repository name must be lowercase" if repo != repo.lower()
               else "repository name components are lowercase letters and digits, joined "
                    "by single '/' and separated by '.', '_', '__' or '-'")
        raise UsageError(f"invalid reference format: {text!r}: {why}")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, repo, tag, digest)


def unnamed_reference(manifest_digest: str) -> Reference:
    """The store's key of the image with this manifest when nothing names it."""
    return Reference(UNNAMED_REGISTRY, UNNAMED_REPOSITORY, None, manifest_digest)
