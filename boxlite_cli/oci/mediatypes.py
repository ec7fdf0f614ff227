"""OCI and Docker media types, and the checks of manifests and descriptors that use them."""

from __future__ import annotations

import json
import re
from typing import Any

from boxlite_cli.errors import ImageError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEXES = (OCI_INDEX, DOCKER_LIST)
MAX_INDEX_DEPTH = 4  # indexes in indexes, walked as containerd walks them
CONFIGS = ("application/vnd.oci.image.config.v1+json",
           "application/vnd.docker.container.image.v1+json")
LAYERS = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 32 << 20
PLATFORM = ("linux", "amd64")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")


def parse_json_document(data: bytes, what: str) -> dict[str, Any]:
    """A manifest, index or config: a JSON object of bounded size."""
    if len(data) > MAX_MANIFEST_BYTES and what != "config":
        raise ImageError(f"malformed {what}: larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # (deep nesting)
        raise ImageError(f"malformed {what}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ImageError(f"malformed {what}: not a JSON object")
    return doc


def check_descriptor(desc: Any, what: str) -> dict[str, Any]:
    """A descriptor with a sha256 digest and a sane size."""
    if not isinstance(desc, dict):
        raise ImageError(f"malformed manifest: {what} is not a descriptor")
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ImageError(f"malformed manifest: {what} has an unsupported digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size > (1 << 40):
        raise ImageError(f"malformed manifest: {what} has an invalid size {size!r}")
    return desc


def document_kind(doc: dict[str, Any], content_type: str | None) -> str:
    """'manifest' or 'index', from the body's mediaType (or the HTTP content type)."""
    media_type = doc.get("mediaType") or (content_type or "").split(";")[0].strip()
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ImageError("the image uses Docker's schema 1 manifest, which is deprecated and "
                         "not supported; re-push it with a current client")
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"malformed manifest: schemaVersion {doc.get('schemaVersion')!r}")
    if media_type in INDEXES or (not media_type and "manifests" in doc):
        return "index"
    if media_type in MANIFESTS or (not media_type and "layers" in doc):
        return "manifest"
    raise ImageError(f"unsupported manifest media type {media_type!r}")


def check_manifest(doc: dict[str, Any]) -> dict[str, Any]:
    """An image manifest: a container config and known layer types."""
    config = check_descriptor(doc.get("config"), "config")
    if config.get("mediaType") not in CONFIGS:
        raise ImageError(f"not a container image: config media type {config.get('mediaType')!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageError("malformed manifest: layers is not a list")
    for i, layer in enumerate(layers):
        check_descriptor(layer, f"layer {i + 1}")
        if layer.get("mediaType") not in LAYERS:
            raise ImageError(f"unsupported layer media type {layer.get('mediaType')!r}")
    return doc


def platform_of(desc: dict[str, Any]) -> str:
    p = desc.get("platform") or {}
    if not isinstance(p, dict):
        return "unknown"
    text = f"{p.get('os', 'unknown')}/{p.get('architecture', 'unknown')}"
    return text + (f"/{p['variant']}" if p.get("variant") else "")


def _variant_rank(desc: dict[str, Any]) -> int:
    """linux/amd64 entries, the baseline first: none or v1, then v2, v3, v4 (an image
    built for x86-64-v3 dies of SIGILL on a CPU without AVX2), anything else last."""
    variant = (desc.get("platform") or {}).get("variant")
    return {None: 0, "": 0, "v1": 1, "v2": 2, "v3": 3, "v4": 4}.get(variant, 9)


def choose_platform(index: dict[str, Any]) -> dict[str, Any]:
    """The linux/amd64 manifest descriptor of an index (error names what it has); of
    several, the one for the baseline CPU (_variant_rank). An entry without a platform
    (optional in OCI) is taken when none names linux/amd64, as containerd does: the
    config of its image is checked afterwards (check_config). Failing those, a nested
    index without a platform: the caller walks into it (to MAX_INDEX_DEPTH)."""
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise ImageError("malformed index: manifests is not a list")
    found = []
    unnamed = nested = None
    amd64: list[dict[str, Any]] = []
    for i, desc in enumerate(entries):
        desc = check_descriptor(desc, f"index entry {i + 1}")
        p = desc.get("platform") or {}
        is_index = desc.get("mediaType") in INDEXES
        is_manifest = desc.get("mediaType") in MANIFESTS or "mediaType" not in desc
        if is_manifest and isinstance(p, dict) and (p.get("os"), p.get("architecture")) == PLATFORM:
            amd64.append(desc)
        if is_manifest and "platform" not in desc and unnamed is None:
            unnamed = desc
        if is_index and not desc.get("platform") and nested is None:
            nested = desc
        found.append(platform_of(desc))
    if amd64:
        return min(amd64, key=_variant_rank)  # (the first of equals)
    if unnamed is not None:
        return unnamed
    if nested is not None:
        return nested
    have = ", ".join(sorted(set(found))) or "no platforms"
    raise ImageError(f"no linux/amd64 image in this index (it has {have})")


def check_config(config: dict[str, Any]) -> None:
    """The image must run here: linux/amd64 when the config says."""
    os_, arch = config.get("os"), config.get("architecture")
    if (os_ and os_ != PLATFORM[0]) or (arch and arch != PLATFORM[1]):
        raise ImageError(f"the image is for {os_}/{arch}; boxlite runs linux/amd64 images")
