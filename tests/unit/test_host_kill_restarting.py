"""kill of a box its restart policy is starting again: refused, as docker's ("is
restarting, wait until it runs"); it recorded 137 though nothing had run."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from boxlite_cli.errors import Conflict
from boxlite_cli.runtime.runtime import Runtime
from boxlite_cli.state.paths import Paths
from boxlite_cli.state.pidfile import ProcessRecord
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status

BOX_ID = "ef" * 32


def test_kill_of_a_box_its_policy_starts_again_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rt = Runtime(Paths(data=home, config=home / "config", cache=home / "cache"))
    rt.boxes.create_dir(BOX_ID)
    state = BoxState(id=BOX_ID, name="looping", status=Status.STARTING, restart_count=3,
                     last_exit_code=2, creator=ProcessRecord.current().to_json(),
                     config=BoxConfig(image="localhost/debian:bookworm",
                                      image_id="sha256:" + "1" * 64, rootfs_base="",
                                      process=ProcessSpec(argv=["true"]), restart="always"))
    rt.boxes.write(state)
    rt.boxes.reserve_name("looping", BOX_ID)
    with pytest.raises(Conflict) as refused:
        rt.kill("looping", signal.SIGKILL)
    assert refused.value.message == ("box looping is restarting (its restart policy starts "
                                     "it again): wait until it runs")
    assert refused.value.hint == "boxlite stop looping ends it and its restarts"
    after = rt.boxes.read(BOX_ID)
    assert (after.status, after.exit_code, after.last_exit_code) == (Status.STARTING, None, 2)
