"""The guest payload: kernel, initramfs, agent root and the built-in image.

Built by `images/build.py` into `<payload cache>/<hash>/`, where the hash covers
every input of the build (recipes, guest agent, protocol, pinned versions). A
payload directory is complete only once it holds `manifest.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from boxlite_cli.state.paths import payload_cache

SOURCE_ROOT = Path(__file__).resolve().parent.parent
# Everything the payload is built from, relative to the source root.
INPUTS = ("images", "guest-agent", "proto")
IGNORED_SUFFIXES = (".pyc", ".md")
IGNORED_PARTS = ("__pycache__",)
DEFAULT_IMAGE = "localhost/debian:bookworm"
AGENT_PORT_NAME = "org.boxlite.agent.0"
AGENT_VSOCK_PORT = 2695
AGENT_DISK_SERIAL = "boxlite-agent"
ROOTFS_DISK_SERIAL = "boxlite-rootfs"


class PayloadMissing(Exception):
    """No built payload matches the sources."""


@dataclass(frozen=True)
class Payload:
    """A built guest payload on disk."""

    root: Path

    @property
    def kernel(self) -> Path:
        """The uncompressed kernel: QEMU boots it directly (PVH), skipping the
        in-guest decompression that costs seconds under emulation."""
        return self.root / "vmlinux"

    @property
    def kernel_bzimage(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.root / "initrd.img"

    @property
    def agent_root(self) -> Path:
        return self.root / "agent-root.ext4"

    @property
    def default_image(self) -> Path:
        """OCI image layout of the built-in `localhost/debian:bookworm`."""
        return self.root / "default-image"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def digest(self) -> str:
        return self.root.name

    def manifest(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.manifest_path.read_text())
        return data


def input_files(source_root: Path = SOURCE_ROOT) -> list[Path]:
    """The files whose content determines the payload, in a stable order."""
    files = []
    for top in INPUTS:
        for path in sorted((source_root / top).rglob("*")):
            if not path.is_file() or path.suffix in IGNORED_SUFFIXES:
                continue
            if any(part in IGNORED_PARTS for part in path.parts):
                continue
            files.append(path)
    return files


def source_hash(source_root: Path = SOURCE_ROOT) -> str:
    """Content hash of the payload inputs (first 16 hex digits of a SHA-256)."""
    h = hashlib.sha256()
    for path in input_files(source_root):
        rel = path.relative_to(source_root).as_posix()
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def payload_dir(digest: str) -> Path:
    return payload_cache() / digest


def find_payload() -> Payload:
    """The payload to boot: `$BOXLITE_PAYLOAD` or the one built from these sources."""
    override = os.environ.get("BOXLITE_PAYLOAD")
    if override:
        payload = Payload(Path(override).expanduser().absolute())
    elif (SOURCE_ROOT / "images").is_dir():
        payload = Payload(payload_dir(source_hash()))
    else:
        payload = Payload(payload_cache() / "current")
    if not payload.manifest_path.is_file():
        raise PayloadMissing(str(payload.root))
    return payload
