"""The agent's read-only root: a minimal Debian tree with Python, grpcio and the agent.

Built in two parts. The base (cached as a stage, see stages.py) is mmdebstrap's
`essential` variant plus AGENT_PACKAGES, with grpcio and protobuf installed
under /opt/boxlite/lib and byte-compiled. Each payload then adds the kernel's
modules (with depmod output) and the guest agent package, byte-compiles the
agent, checks that `import grpc` works with the guest's python3, and packs the
tree into an ext4 image.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import debian
from .kernel import Kernel
from .kmods import ModuleIndex, copy_module, plain_path
from .proc import BuildError, Log, capture, run
from .stages import StageCache, recipe_key

VARIANT = "essential"
# kmod for modprobe, mount/util-linux/e2fsprogs for the container's disks, crun to
# run the container's processes (DESIGN.md prefers it); grpcio's wheel links
# libstdc++ dynamically.
AGENT_PACKAGES = ("python3", "mount", "util-linux", "e2fsprogs", "kmod", "crun", "libstdc++6")
# Pinned like the host side's pyproject.toml (a unit test keeps them equal).
GRPCIO_VERSION = "1.76.0"
PROTOBUF_VERSION = "6.33.5"
GUEST_PYTHON = "3.11"  # bookworm's python3
WHEEL_PLATFORM = "manylinux_2_17_x86_64"
WHEEL_PLATFORM_LEGACY = "manylinux2014_x86_64"
AGENT_LIB = "opt/boxlite/lib"
AGENT_PACKAGE = "boxlite_agent"
# The exec helper (guest-agent/spawn/), static: spawn.py's HELPER.
SPAWN_HELPER = "opt/boxlite/libexec/boxlite-spawn"
SPAWN_SOURCE = Path("spawn") / "boxlite-spawn.c"  # under guest-agent/
CFLAGS = ("-O2", "-static", "-s", "-Wall", "-Wextra", "-Werror")
# Modules the agent may modprobe later, on top of those the initramfs loads.
AGENT_MODULES = (
    "9p", "9pnet_virtio", "virtiofs", "fuse",
    "vsock", "vmw_vsock_virtio_transport", "vsock_loopback",
    "virtio_net", "overlay",
)
# Files depmod and modprobe read besides the modules themselves.
MODULE_METADATA = ("modules.builtin", "modules.builtin.modinfo", "modules.order")
BLOCK_SIZE = 4096
INODE_SIZE = 256


@dataclass(frozen=True)
class AgentRootInfo:
    """What the manifest records about the agent root."""

    python: str
    grpcio: str
    protobuf: str
    size: int


def base_recipe() -> dict[str, object]:
    return {
        **debian.recipe(VARIANT, AGENT_PACKAGES),
        "wheels": [f"grpcio=={GRPCIO_VERSION}", f"protobuf=={PROTOBUF_VERSION}"],
        "python": GUEST_PYTHON,
        "platform": [WHEEL_PLATFORM, WHEEL_PLATFORM_LEGACY],
    }


def base_tree(stages: StageCache, log: Log) -> Path:
    """The cached base tree (mmdebstrap + wheels); built when its recipe changed."""
    key = recipe_key(base_recipe(), Path(__file__), Path(debian.__file__))
    stage = stages.get("agent-base", key, lambda tmp: build_base(tmp, log))
    return stage / "tree"


def build_base(stage: Path, log: Log) -> None:
    tree = stage / "tree"
    tree.mkdir()
    log(f"agent root: mmdebstrap {debian.SUITE} {VARIANT} + {','.join(AGENT_PACKAGES)}")
    run(debian.mmdebstrap_argv(VARIANT, AGENT_PACKAGES, str(tree)),
        env=debian.mmdebstrap_env(stage))
    log(f"agent root: pip install grpcio=={GRPCIO_VERSION} protobuf=={PROTOBUF_VERSION}")
    install_wheels(tree / AGENT_LIB)
    compile_python(tree, f"/{AGENT_LIB}")


def install_wheels(target: Path) -> None:
    """grpcio and protobuf for the guest's Python, whatever Python runs this build."""
    target.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--target", target, "--only-binary=:all:", "--no-compile",
         "--python-version", GUEST_PYTHON, "--platform", WHEEL_PLATFORM,
         # protobuf tags its compiled wheel only with the legacy manylinux2014 name.
         "--platform", WHEEL_PLATFORM_LEGACY,
         f"grpcio=={GRPCIO_VERSION}", f"protobuf=={PROTOBUF_VERSION}"])
    shutil.rmtree(target / "bin", ignore_errors=True)


def compile_python(tree: Path, guest_dir: str) -> None:
    """Byte-compile `guest_dir` with the guest's own python3 (the root is read-only).

    unchecked-hash .pyc files are used without looking at the source's mtime.
    """
    run(["chroot", tree, "/usr/bin/python3", "-m", "compileall", "-q",
         "--invalidation-mode", "unchecked-hash", guest_dir])


def agent_modules(index: ModuleIndex, initramfs_modules: list[str],
                  optional: list[str]) -> list[str]:
    """Every module the agent root carries: the initramfs's and AGENT_MODULES, with deps."""
    return index.load_order([*initramfs_modules, *optional, *AGENT_MODULES])


def install_modules(tree: Path, kernel: Kernel, index: ModuleIndex, names: list[str]) -> None:
    """Copy `names` into /lib/modules/<release>/ of `tree` and run depmod there."""
    dest = tree / "usr/lib/modules" / kernel.release
    for name in names:
        rel = index.paths[name]
        copy_module(kernel.moddir / rel, dest / plain_path(rel))
    for meta in MODULE_METADATA:
        if (kernel.moddir / meta).is_file():
            shutil.copyfile(kernel.moddir / meta, dest / meta)
    run(["depmod", "-b", tree, kernel.release])


def install_agent(tree: Path, agent_src: Path) -> None:
    """Copy the guest agent package (whatever state it is in) under /opt/boxlite/lib."""
    dest = tree / AGENT_LIB / AGENT_PACKAGE
    if agent_src.is_dir():
        shutil.copytree(agent_src, dest,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
    else:
        dest.mkdir(parents=True)


def install_spawn_helper(tree: Path, source: Path) -> None:
    """Compile the exec helper (static: it runs before any library of the container)."""
    dest = tree / SPAWN_HELPER
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["gcc", *CFLAGS, "-o", dest, source])


def probe_python(tree: Path) -> dict[str, str]:
    """Import grpc and protobuf with the guest's python3; their versions and Python's."""
    script = ("import json, platform, grpc, google.protobuf as pb; "
              "print(json.dumps({'python': platform.python_version(), "
              "'grpcio': grpc.__version__, 'protobuf': pb.__version__}))")
    out = capture(["chroot", tree, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin",
                   f"PYTHONPATH=/{AGENT_LIB}", "PYTHONDONTWRITEBYTECODE=1",
                   "/usr/bin/python3", "-c", script])
    versions: dict[str, str] = json.loads(out)
    expected = {"grpcio": GRPCIO_VERSION, "protobuf": PROTOBUF_VERSION}
    for name, version in expected.items():
        if versions[name] != version:
            raise BuildError(f"agent root has {name} {versions[name]}, expected {version}")
    return versions


def tree_usage(tree: Path) -> tuple[int, int]:
    """(bytes, inodes) that `tree` needs on ext4 with 4 KiB blocks, hard links once."""
    seen: set[tuple[int, int]] = set()
    blocks = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in (*dirnames, *filenames):
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            # Short symlink targets live in the inode itself.
            if not stat.S_ISLNK(st.st_mode) or st.st_size > 59:
                blocks += math.ceil(st.st_size / BLOCK_SIZE)
    return blocks * BLOCK_SIZE, len(seen) + 1


def image_size(tree: Path) -> tuple[int, int]:
    """(image bytes, inode count) for the tree: content plus modest slack."""
    data, inodes = tree_usage(tree)
    inode_count = inodes + 512
    metadata = inode_count * INODE_SIZE + data // 64
    size = data + metadata + 8 * 2**20
    return math.ceil(size / 2**20) * 2**20, inode_count


def make_ext4(tree: Path, out: Path, fs_uuid: uuid.UUID, log: Log) -> int:
    """Pack `tree` into a journal-less ext4 image at `out`; returns its size."""
    size, inode_count = image_size(tree)
    for attempt in range(3):
        out.unlink(missing_ok=True)
        try:
            run(["mkfs.ext4", "-q", "-F", "-b", str(BLOCK_SIZE), "-I", str(INODE_SIZE),
                 "-N", str(inode_count), "-m", "0", "-L", "boxlite-agent",
                 "-O", "^has_journal,^resize_inode", "-U", str(fs_uuid),
                 "-E", f"root_owner=0:0,hash_seed={fs_uuid}",
                 "-d", tree, out, f"{size // 1024}k"])
            break
        except BuildError:
            if attempt == 2:
                raise
            size = size * 5 // 4
            log(f"agent root: mkfs.ext4 ran out of space, retrying with {size >> 20} MiB")
    run(["e2fsck", "-f", "-n", out], stdout=subprocess.DEVNULL)
    return out.stat().st_size


def build_agent_root(work: Path, out: Path, base: Path, kernel: Kernel, index: ModuleIndex,
                     modules: list[str], agent_src: Path, fs_uuid: uuid.UUID,
                     log: Log) -> AgentRootInfo:
    """Copy the base tree, add modules and the agent, check it, and write `out`."""
    tree = work / "agent-root"
    log("agent root: copying the base tree")
    run(["cp", "-a", "--reflink=auto", base, tree])
    install_modules(tree, kernel, index, modules)
    install_agent(tree, agent_src)
    install_spawn_helper(tree, agent_src.parent / SPAWN_SOURCE)
    try:
        compile_python(tree, f"/{AGENT_LIB}/{AGENT_PACKAGE}")
    except BuildError as exc:
        # The agent is developed alongside; a broken file must not block the payload.
        log.warn(f"agent root: the guest agent does not byte-compile cleanly: {exc}")
    versions = probe_python(tree)
    log("agent root: mkfs.ext4")
    size = make_ext4(tree, out, fs_uuid, log)
    log(f"agent root: {size >> 20} MiB, python {versions['python']}, "
        f"grpcio {versions['grpcio']}, protobuf {versions['protobuf']}")
    return AgentRootInfo(python=versions["python"], grpcio=versions["grpcio"],
                         protobuf=versions["protobuf"], size=size)
