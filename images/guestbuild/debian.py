"""mmdebstrap invocations shared by the agent root and the default box image."""

from __future__ import annotations

import os
from pathlib import Path

SUITE = "bookworm"
# Timestamps of the Debian trees are clamped to this (2025-01-01T00:00:00Z), which
# makes the default image's layer tar reproducible for a given mirror state.
SOURCE_DATE_EPOCH = 1735689600
# Merged /usr via symlinks plus the usr-is-merged package; without it apt picks
# `usrmerge`, which drags in perl (about 50 MB).
MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"
# Like Docker's debian:*-slim: no manuals, docs or translations. dpkg keeps these
# rules, so later installs inside a box stay slim as well.
SLIM_DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
)
# mmdebstrap copies the host's resolv.conf and hostname; neither belongs in a guest.
FORGET_HOST_FILES = 'rm -f "$1/etc/resolv.conf" "$1/etc/hostname"'


def mmdebstrap_argv(variant: str, packages: tuple[str, ...], target: str) -> list[str]:
    """The mmdebstrap command line for a `SUITE` tree (root mode) at `target`."""
    argv = [
        "mmdebstrap",
        "--mode=root",
        f"--variant={variant}",
        f"--hook-dir={MERGED_USR_HOOKS}",
        f"--customize-hook={FORGET_HOST_FILES}",
    ]
    if packages:
        argv.append("--include=" + ",".join(packages))
    argv += [f"--dpkgopt={option}" for option in SLIM_DPKG_OPTIONS]
    return [*argv, SUITE, target]


def mmdebstrap_env(tmpdir: Path) -> dict[str, str]:
    """Environment for mmdebstrap: reproducible timestamps, scratch space in `tmpdir`."""
    return {
        "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH),
        "TMPDIR": str(tmpdir),
        "LC_ALL": "C.UTF-8",
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }


def recipe(variant: str, packages: tuple[str, ...]) -> dict[str, object]:
    """Everything about an mmdebstrap run that changes its result (for stage keys)."""
    return {
        "suite": SUITE,
        "variant": variant,
        "packages": list(packages),
        "dpkg": list(SLIM_DPKG_OPTIONS),
        "epoch": SOURCE_DATE_EPOCH,
        "hooks": [MERGED_USR_HOOKS, FORGET_HOST_FILES],
    }
