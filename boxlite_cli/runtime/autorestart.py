"""The restarter of a box whose restart policy (state/restartpolicy.py) starts it
again: started detached by the box's shim when the main process ended, it waits the
backoff, then starts the box as `boxlite start` would, unless a start, stop, kill or
removal came meanwhile (Runtime._start checks that under the box's lock).

`python -m boxlite_cli.runtime.autorestart BOX_DIR DELAY_S FINISHED_AT`, with the
environment of the shim (so the home is the same).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from boxlite_cli.errors import BoxliteError
from boxlite_cli.state.boxfiles import BoxFiles
from boxlite_cli.state.paths import home_paths

log = logging.getLogger("boxlite.autorestart")


def main(argv: list[str]) -> int:
    box_dir, delay_s, finished_at = Path(argv[1]), float(argv[2]), float(argv[3])
    logging.basicConfig(filename=BoxFiles(box_dir).shim_log, level=logging.INFO,
                        format="%(asctime)s %(levelname)s restarter: %(message)s")
    time.sleep(delay_s)
    paths = home_paths()
    if paths.box_dir(box_dir.name) != box_dir:
        log.error("not restarted: %s is not a box of this home (%s)", box_dir, paths.data)
        return 1
    from boxlite_cli.runtime.runtime import Runtime  # (after the wait: nothing held meanwhile)

    runtime = Runtime(paths)
    runtime.policy_restart_of = finished_at
    try:
        result = runtime.start(box_dir.name)
    except BoxliteError as e:
        log.info("%s", e.message)
        return 1
    log.info("started again by its restart policy" if result.exit_code is None
             else f"its start failed: {result.error}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
