"""`boxlite diff`: what a box added, changed and deleted on its root file system since
it was made from its image (docker diff's list).

The box's agent lists its root file system alone (nothing mounted on it: volumes,
tmpfs mounts and /etc/hosts are not the box's disk), entry by entry, without file
data; each entry is compared with what the image's layers make at that path, as
`commit` compares them (oci/commit.py). A stopped box is read from a maintenance
start of its VM, as `cp` reads one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from boxlite_cli.oci.commit import Change, box_changes, boxlite_made, image_index
from boxlite_cli.runtime.commit import box_image, box_tree, disk_made_ns
from boxlite_cli.runtime.copy import box_agent
from boxlite_cli.runtime.pausing import refuse_paused

if TYPE_CHECKING:
    from boxlite_cli.runtime.runtime import Runtime


def diff(rt: Runtime, ref: str) -> list[Change]:
    """Box `ref`'s changes to its image's files, by path."""
    state = rt.get(rt.resolve(ref))
    refuse_paused(state, "list its changes (its disk is read through its guest, which the "
                         "pause stops)")
    image = box_image(rt, state, "diff")
    base = image_index(rt.images, image)
    with box_agent(rt, ref) as client:
        return box_changes(box_tree(client), base, disk_made_ns(state),
                           boxlite_made(image.container_config))
