"""The guest payload: kernel, initramfs, agent root and the built-in image.

Built by `images/build.py` into `<payload cache>/<hash>/`, where the hash covers
every input of the build (recipes, guest agent, protocol, pinned versions). A
payload directory is complete only once it holds `manifest.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Collection
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
# A payload directory's mtime is its last use (renewed at most this often), and a build
# prunes the payloads not used for PAYLOAD_MAX_IDLE_S: each is ~150-300 MB, and every
# change of the guest's sources (a boxlite upgrade) builds another.
USE_MARK_INTERVAL_S = 3600
PAYLOAD_MAX_IDLE_S = 30 * 86400
PAYLOAD_NAME = re.compile(r"[0-9a-f]{16}")


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

    def mark_used(self, now: float | None = None) -> None:
        """Record a use (the directory's mtime, renewed at most hourly; see prune_payloads)."""
        now = time.time() if now is None else now
        with contextlib.suppress(OSError):  # (not ours to touch: then it just ages)
            if now - self.root.stat().st_mtime > USE_MARK_INTERVAL_S:
                os.utime(self.root, (now, now))


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


def build_hint() -> str:
    """How to get the payload find_payload did not find, from any directory."""
    if os.environ.get("BOXLITE_PAYLOAD"):
        return ("$BOXLITE_PAYLOAD names no built payload: unset it (the one built from "
                "these sources is used then), or point it at one")
    if (SOURCE_ROOT / "Makefile").is_file():
        return f"build it with: make -C {SOURCE_ROOT} payload"
    return "build it from a boxlite checkout: make payload"


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
    payload.mark_used()
    return payload


def prune_payloads(cache: Path, keep: Collection[str], max_idle_s: float = PAYLOAD_MAX_IDLE_S,
                   now: float | None = None) -> list[str]:
    """Delete the built payloads of `cache` that are not in `keep` and were not used for
    `max_idle_s`; the names deleted. Called by a build, with the build lock held. A
    running VM keeps the files it opened; a memory checkpoint taken on a deleted payload
    can no longer be resumed (runtime/snapshots.py says so), its disk still can."""
    now = time.time() if now is None else now
    gone = []
    for entry in sorted(cache.iterdir()) if cache.is_dir() else []:
        if entry.name in keep or not PAYLOAD_NAME.fullmatch(entry.name):
            continue
        try:
            if not (entry / "manifest.json").is_file() or now - entry.stat().st_mtime <= max_idle_s:
                continue
            # Renamed first: a half-deleted payload never looks built (and the next build's
            # leftover sweep finishes what a killed prune began).
            doomed = entry.with_name(f".{entry.name}.old-{os.getpid()}")
            entry.rename(doomed)
        except OSError:
            continue
        shutil.rmtree(doomed, ignore_errors=True)
        gone.append(entry.name)
    return gone
