"""Running a box's main process in the foreground, as `run` and `start -a` do."""

from __future__ import annotations

from boxlite_cli.agent.client import AgentClient
from boxlite_cli.errors import BoxliteError
from boxlite_cli.runtime.runtime import MAIN, Runtime
from boxlite_cli.runtime.session import Session

STOP_WAIT_S = 60.0


def attach_main(rt: Runtime, box_id: str, stdin: bool, tty: bool) -> int:
    """Stream the main process until it ends; wait for the box to stop; its exit code."""
    client = AgentClient.connect(f"unix:{rt.files(box_id).agent_socket}")
    try:
        try:
            code = Session(client, MAIN, stdin=stdin, tty=tty).run().exit_code
        except BoxliteError:
            # The VM went away under us: the shim records why.
            rt.wait_stopped(box_id, STOP_WAIT_S)
            state = rt.boxes.read(box_id) if rt.boxes.box_dir(box_id).exists() else None
            if state is None or state.exit_code is None:
                raise
            code = state.exit_code
    finally:
        client.close()
    rt.wait_stopped(box_id, STOP_WAIT_S)
    return code
