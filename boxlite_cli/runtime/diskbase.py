"""A box's disk is a qcow2 overlay on its image's unpacked root file system (the base):
before the box's disk is read, the base must be the one the overlay was made on."""

from __future__ import annotations

from pathlib import Path

from boxlite_cli.disks.ext4id import filesystem_uuid
from boxlite_cli.errors import DiskError
from boxlite_cli.state.records import BoxState, Status


def check_disk_base(state: BoxState) -> None:
    """DiskError for a box whose base is gone, or was unpacked again since the box was
    made (a new unpack differs byte for byte: the box's changes, written against the old
    one, would read as garbage on it). A box without a base (imported) passes."""
    base = state.config.rootfs_base
    if not base:
        return
    lost = f"box {state.name} cannot be used: "
    hint = (f"remove it (boxlite rm {state.name}); what it changed cannot be read without "
            "the file system it was made on")
    try:
        current = filesystem_uuid(Path(base))
    except FileNotFoundError:
        raise DiskError(lost + f"its disk is built on its image's unpacked root file "
                        f"system {base}, which is gone", hint=hint) from None
    except OSError as e:
        raise DiskError(lost + f"cannot read its image's root file system {base}: "
                        f"{e.strerror}") from None
    if state.config.rootfs_base_id and current != state.config.rootfs_base_id:
        if state.status in (Status.RUNNING, Status.STARTING, Status.STOPPING):
            # (its VM still holds the old file open: what reads the disk through it works)
            raise DiskError(f"box {state.name}'s image's root file system {base} was unpacked "
                            "again since the box was made on it: only its running VM can "
                            "read its disk now", hint="save what it changed first (boxlite "
                            f"commit {state.name} IMAGE, or boxlite cp), then remove it "
                            f"(boxlite rm -f {state.name})")
        raise DiskError(lost + f"its image's root file system {base} was unpacked again "
                        "since the box was made on it, and its disk does not fit the new one",
                        hint=hint)
