#!/usr/bin/env python3
"""Build the boxlite guest payload into `<payload cache>/<source hash>/`.

    .venv/bin/python images/build.py [--force] [--quiet]

Writes vmlinuz, vmlinux, initrd.img, agent-root.ext4, default-image/ and, last,
manifest.json into a temporary directory next to the target, renames it into
place and points `<payload cache>/current` at it. A payload that already has
manifest.json is left alone (exit 0 at once) unless --force. Concurrent builds
serialise on `<payload cache>/build.lock`. Needs root (mmdebstrap in root mode,
chroot, mknod) and the Debian packages in HOST_PACKAGES. See images/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from guestbuild import agentroot, initramfs, ociimage  # noqa: E402
from guestbuild.kernel import Kernel, kernel_stage  # noqa: E402
from guestbuild.kmods import ModuleIndex  # noqa: E402
from guestbuild.proc import BuildError, Log, remove_tree, require_tools  # noqa: E402
from guestbuild.stages import StageCache  # noqa: E402

from boxlite_cli.payload import (  # noqa: E402
    DEFAULT_IMAGE,
    PAYLOAD_MAX_IDLE_S,
    Payload,
    payload_dir,
    prune_payloads,
    source_hash,
)
from boxlite_cli.state.paths import payload_cache  # noqa: E402

# Debian packages the build needs on the host (the Makefile installs them).
HOST_PACKAGES = (
    "mmdebstrap",  # Debian trees; also brings mmtarfilter
    "debian-archive-keyring",  # mmdebstrap checks bookworm's Release files with it
    "busybox-static",  # /bin/busybox, copied into the initramfs
    "cpio",  # the initramfs archive
    "e2fsprogs",  # mkfs.ext4 -d, e2fsck
    "kmod",  # depmod
    "zstd",  # only for kernels whose modules are .ko.zst
    "gcc",  # the guest's exec helper (guest-agent/spawn/boxlite-spawn.c) ...
    "libc6-dev",  # ... linked statically
)
# Host tools the build runs, and the package that has each.
HOST_TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "mmtarfilter": "mmdebstrap",
    "cpio": "cpio",
    "mkfs.ext4": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "depmod": "kmod",
    "gcc": "gcc",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
    "chroot": "coreutils",
}
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
BUSYBOX = Path("/bin/busybox")
INIT_SCRIPT = Path(__file__).resolve().parent / "init.sh"
AGENT_SOURCE = REPO_ROOT / "guest-agent" / "boxlite_agent"
VMLINUX = "vmlinux"
# Every module the payload may use; the cached kernel keeps only these (and deps).
KERNEL_MODULES = (*initramfs.INITRAMFS_MODULES, *initramfs.OPTIONAL_MODULES,
                  *initramfs.PCI_MODULES,
                  *agentroot.AGENT_MODULES)
MANIFEST_FORMAT = 1
# The kernel command line this payload was measured with; the host appends
# boxlite.mode=... and, under TCG, tsc_early_khz=... (see images/README.md).
KERNEL_CMDLINE = (
    "console=ttyS0 quiet panic=-1 cryptomgr.notests initcall_blacklist=init_kprobe_trace"
)


@dataclass(frozen=True)
class Built:
    """Facts about the artifacts that go into manifest.json."""

    kernel_version: str
    kernel_package: str
    agent_root_bytes: int
    python: str
    grpcio: str
    protobuf: str
    initrd_modules: list[str]
    default_image_digest: str


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build the boxlite guest payload.")
    parser.add_argument("--force", action="store_true",
                        help="rebuild the payload and the cached Debian trees")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser.parse_args(argv)


def is_built(target: Path) -> bool:
    return Payload(target).manifest_path.is_file()


def point_current(cache: Path, digest: str) -> None:
    """Atomically make `<cache>/current` a relative symlink to `digest`."""
    link = cache / "current"
    if link.is_symlink() and os.readlink(link) == digest:
        return
    tmp = cache / f".current-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(digest)
    os.replace(tmp, link)


def check_host() -> None:
    """Root, and every tool the build runs (sbin directories added to PATH)."""
    if os.geteuid() != 0:
        raise BuildError("building the guest payload needs root (mmdebstrap --mode=root, "
                         "chroot, mknod)")
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join([*path, *(d for d in SBIN_DIRS if d not in path)])
    require_tools(HOST_TOOLS)
    if not BUSYBOX.is_file():
        raise BuildError(f"{BUSYBOX} missing; install it with: apt-get install busybox-static")


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that temporary directories get removed."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link `src` (a cached stage file) to `dest`, copying across filesystems."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def install_kernel(kernel: Kernel, out: Path) -> None:
    """vmlinuz (the bzImage) and vmlinux (its uncompressed ELF, for PVH boot)."""
    link_or_copy(kernel.vmlinuz, Payload(out).kernel)
    link_or_copy(kernel.vmlinux, out / VMLINUX)


def build_artifacts(out: Path, work: Path, digest: str, stages: StageCache, log: Log) -> Built:
    """Write every artifact but manifest.json into `out`; scratch files go to `work`."""
    payload = Payload(out)
    log(f"payload {digest}: building")
    kernel = kernel_stage(stages, KERNEL_MODULES, log)
    log(f"kernel: {kernel.apt_spec}")
    install_kernel(kernel, out)
    index = ModuleIndex.load(kernel.moddir)
    modules = initramfs.build_initramfs(work, payload.initrd, kernel, index, INIT_SCRIPT,
                                        BUSYBOX, log)
    _, optional = initramfs.module_load_lists(index)
    base = agentroot.base_tree(stages, log)
    agent = agentroot.build_agent_root(
        work, payload.agent_root, base, kernel, index,
        agentroot.agent_modules(index, modules, optional), AGENT_SOURCE,
        uuid.uuid5(uuid.NAMESPACE_URL, f"boxlite-agent-root:{digest}"), log)
    layer = ociimage.layer_stage(stages, log)
    image_digest = ociimage.write_default_image(payload.default_image, layer, DEFAULT_IMAGE, log)
    return Built(kernel_version=kernel.release, kernel_package=kernel.apt_spec,
                 agent_root_bytes=agent.size, python=agent.python, grpcio=agent.grpcio,
                 protobuf=agent.protobuf, initrd_modules=modules,
                 default_image_digest=image_digest)


def manifest(digest: str, built: Built) -> dict[str, object]:
    facts = asdict(built)
    image_digest = facts.pop("default_image_digest")
    return {
        "format": MANIFEST_FORMAT,
        "hash": digest,
        **facts,
        "built_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kernel_cmdline": KERNEL_CMDLINE,
        "initrd_compression": initramfs.INITRD_COMPRESSION or "none",
        "default_image": {"ref": DEFAULT_IMAGE, "digest": image_digest},
    }


def seal(out: Path) -> None:
    """Make the finished payload read-only to everyone, readable by everyone."""
    for dirpath, _dirnames, filenames in os.walk(out):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o444)


def move_into_place(out: Path, target: Path) -> None:
    """Rename the finished `out` to `target`, replacing an old one (--force)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    out.rename(target)
    if old is not None:
        remove_tree(old)


def remove_leftovers(cache: Path) -> None:
    """Temp dirs of builds that were killed; called with the build lock held."""
    for pattern in (".*.partial-*", ".work-*", ".*.old-*", ".current-*"):
        for leftover in cache.glob(pattern):
            remove_tree(leftover)


def build_payload(cache: Path, digest: str, target: Path, force: bool, log: Log) -> None:
    """Build into temp dirs next to `target`, then rename; nothing is left on failure."""
    stages = StageCache(cache / "stages", log, rebuild=force)
    remove_leftovers(cache)
    stages.clean_partial()
    out = Path(tempfile.mkdtemp(prefix=f".{digest}.partial-", dir=cache))
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=cache))
    try:
        built = build_artifacts(out, work, digest, stages, log)
        (out / "manifest.json").write_text(json.dumps(manifest(digest, built), indent=2) + "\n")
        seal(out)
        move_into_place(out, target)
    except BaseException:
        remove_tree(out)
        raise
    finally:
        remove_tree(work)


def build_locked(cache: Path, digest: str, force: bool, log: Log) -> None:
    """Build under `<cache>/build.lock`, unless another build made it meanwhile."""
    from boxlite_cli.state.flock import FileLock, Timeout

    cache.mkdir(parents=True, exist_ok=True)
    lock = FileLock(cache / "build.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log("waiting for another payload build to finish")
        lock.acquire()
    try:
        target = payload_dir(digest)
        if is_built(target) and not force:
            log(f"payload {digest} was built meanwhile")
        else:
            build_payload(cache, digest, target, force, log)
            log(f"payload ready: {target}")
        point_current(cache, digest)
        for name in prune_payloads(cache, keep={digest}):
            log(f"removed payload {name} (unused for {PAYLOAD_MAX_IDLE_S // 86400} days)")
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    digest = source_hash()
    cache = payload_cache()
    if is_built(payload_dir(digest)) and not args.force:
        point_current(cache, digest)
        return 0
    raise_on_sigterm()
    try:
        check_host()
        build_locked(cache, digest, args.force, Log(args.quiet))
    except BuildError as exc:
        print(f"images/build.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
