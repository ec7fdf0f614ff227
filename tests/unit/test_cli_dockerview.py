"""docker's State for boxlite's states: only docker's words reach `{{.State.Status}}`."""

from __future__ import annotations

import pytest

from boxlite_cli.cli.dockerview import docker_state
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status


def box(status: Status, last_exit_code: int | None = None, restart_count: int = 0) -> BoxState:
    return BoxState(id="ab" * 32, name="web", status=status, last_exit_code=last_exit_code,
                    restart_count=restart_count,
                    config=BoxConfig(image="localhost/debian:bookworm", image_id="sha256:" + "1" * 64,
                                     rootfs_base="", process=ProcessSpec(argv=["true"])))


@pytest.mark.parametrize(("state", "status", "restarting"), [
    (box(Status.CREATING), "created", False),
    (box(Status.STARTING), "created", False),  # (its first start: docker's start returns then)
    (box(Status.STARTING, last_exit_code=0), "exited", False),  # (started again by hand)
    (box(Status.STARTING, last_exit_code=3, restart_count=2), "restarting", True),  # (policy)
    (box(Status.STOPPING), "running", False),
    (box(Status.RUNNING), "running", False),
    (box(Status.EXITED), "exited", False),
])
def test_boxlites_own_states_are_said_in_dockers_words(state: BoxState, status: str,
                                                       restarting: bool) -> None:
    shown = docker_state(state, 0)
    assert (shown["Status"], shown["Restarting"]) == (status, restarting)
    assert shown["Status"] in ("created", "running", "paused", "restarting", "removing",
                               "exited", "dead")


def test_a_box_its_policy_starts_again_keeps_its_last_exit_code() -> None:
    """(ExitCode dropped to 0 while the policy's start ran: docker keeps the last.)"""
    assert docker_state(box(Status.STARTING, last_exit_code=2, restart_count=1), 0)[
        "ExitCode"] == 2
    assert docker_state(box(Status.STARTING, last_exit_code=2), 0)["ExitCode"] == 0  # (by hand)
