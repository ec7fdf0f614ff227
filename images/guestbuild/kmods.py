"""Kernel modules: dependency order from `modules.dep`, and copying them out.

`modules.dep` (written by depmod) has one line per module,
`kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko ...`, naming
every module the first one needs, directly or not. Modules are known by name:
the file name without `.ko[.xz|.zst|.gz]`, with `-` read as `_` (as the kernel does).
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .proc import BuildError

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


class UnknownModule(BuildError):
    """A module that is neither in modules.dep nor built into the kernel."""


class DependencyCycle(BuildError):
    """modules.dep says a module needs itself."""


def module_name(path: str) -> str:
    """`kernel/drivers/char/hw_random/virtio-rng.ko.xz` -> `virtio_rng`."""
    base = path.rsplit("/", 1)[-1]
    for suffix in MODULE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


@dataclass(frozen=True)
class ModuleIndex:
    """What depmod knows about one kernel's modules."""

    paths: dict[str, str]
    """Module name -> path relative to /lib/modules/<release>/."""
    deps: dict[str, tuple[str, ...]]
    """Module name -> names of the modules it needs, as modules.dep lists them."""
    builtin: frozenset[str] = frozenset()
    """Names of modules compiled into the kernel (from modules.builtin)."""

    @classmethod
    def parse(cls, modules_dep: str, modules_builtin: str = "") -> ModuleIndex:
        paths: dict[str, str] = {}
        deps: dict[str, tuple[str, ...]] = {}
        for line in modules_dep.splitlines():
            if ":" not in line:
                continue
            path, _, needs = line.partition(":")
            name = module_name(path.strip())
            paths[name] = path.strip()
            deps[name] = tuple(module_name(dep) for dep in needs.split())
        builtin = frozenset(module_name(line.strip()) for line in modules_builtin.splitlines()
                            if line.strip())
        return cls(paths=paths, deps=deps, builtin=builtin)

    @classmethod
    def load(cls, moddir: Path) -> ModuleIndex:
        """Read `modules.dep` and `modules.builtin` from /lib/modules/<release>/."""
        builtin = moddir / "modules.builtin"
        return cls.parse(
            (moddir / "modules.dep").read_text(),
            builtin.read_text() if builtin.is_file() else "",
        )

    def load_order(self, wanted: Iterable[str]) -> list[str]:
        """`wanted` and everything they need, each after all of its dependencies.

        Built-in modules are left out (nothing to load). The order is stable: the
        wanted modules in the given order, each preceded by its not yet listed
        dependencies, visited last-listed first as modprobe does.
        """
        order: list[str] = []
        done: set[str] = set()
        for name in wanted:
            self._visit(name.replace("-", "_"), order, done, ())
        return order

    def _visit(self, name: str, order: list[str], done: set[str], stack: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in stack:
            raise DependencyCycle(" -> ".join((*stack, name)))
        if name not in self.paths:
            if name in self.builtin:
                done.add(name)
                return
            raise UnknownModule(f"kernel module {name!r} is neither a module nor built in")
        for dep in reversed(self.deps[name]):
            self._visit(dep, order, done, (*stack, name))
        done.add(name)
        order.append(name)


def copy_module(src: Path, dest: Path) -> None:
    """Copy one module file to `dest` (a `.ko` path), decompressing if needed.

    busybox insmod cannot read compressed modules, so everything is stored as
    plain `.ko`.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = src.name[src.name.rfind(".ko"):]
    if suffix == ".ko":
        shutil.copyfile(src, dest)
    elif suffix == ".ko.xz":
        dest.write_bytes(lzma.decompress(src.read_bytes()))
    elif suffix == ".ko.gz":
        dest.write_bytes(gzip.decompress(src.read_bytes()))
    elif suffix == ".ko.zst":
        with dest.open("wb") as out:
            subprocess.run(["zstd", "-q", "-d", "-c", str(src)], stdout=out, check=True)
    else:
        raise BuildError(f"unknown kernel module format: {src}")
    dest.chmod(0o644)


def plain_path(relpath: str) -> str:
    """A module's path with any compression suffix replaced by plain `.ko`."""
    return relpath[: relpath.rfind(".ko")] + ".ko"
