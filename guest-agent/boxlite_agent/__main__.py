"""``python -m boxlite_agent [--local] [--listen unix:PATH] [--rootfs DIR]``: the agent
process outside PID 1 (development hosts, tests), with the environment ``init`` gives it."""

from __future__ import annotations

import os


def main() -> int:
    # As init does: grpc's fork handlers would stall every fork of an exec.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from boxlite_agent.server import main as serve

    return serve()


if __name__ == "__main__":
    raise SystemExit(main())
