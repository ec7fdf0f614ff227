"""docker's restart policies (`--restart`): which ends of a box's main process start
it again, and after how long.

The box's shim (a daemon of its own box) acts on them when the main process ends
(shim/main.py); a detached restarter (runtime/autorestart.py) waits the backoff and
starts the box. A `stop` or `kill` of the box (or its removal) ends that: as docker's,
a box stopped by hand is not restarted. Nothing restarts boxes after the host reboots
(there is no daemon then): `always` and `unless-stopped` are alike here.
"""

from __future__ import annotations

import re

from boxlite_cli.errors import UsageError

NO = "no"
POLICIES = (NO, "always", "unless-stopped", "on-failure")
_POLICY = re.compile(r"^(no|always|unless-stopped|on-failure)(?::(\d{1,9}))?\Z")
FIRST_DELAY_S = 0.1  # docker's backoff: doubled at each restart,
MAX_DELAY_S = 60.0  # up to a minute,
STEADY_S = 10.0  # and started again from FIRST_DELAY_S after a run this long


def parse_restart(text: str) -> str:
    """A `--restart` value, normalized (`""` is `no`; `on-failure:0` is `on-failure`)."""
    match = _POLICY.match(text or NO)
    if match is None:
        raise UsageError(f"invalid --restart {text!r}: a policy is no, always, unless-stopped "
                         "or on-failure[:N]")
    name, count = match.group(1), match.group(2)
    if count is not None and name != "on-failure":
        raise UsageError(f"invalid --restart {text!r}: only on-failure takes a count")
    return f"{name}:{int(count)}" if count is not None and int(count) else name


def policy_parts(policy: str) -> tuple[str, int]:
    """(name, most restarts; 0: no limit) of a normalized policy."""
    name, _, count = policy.partition(":")
    return name, int(count or 0)


def restarts(policy: str, exit_code: int, restart_count: int) -> bool:
    """Whether a main process that ended with `exit_code` has its box started again."""
    name, most = policy_parts(policy)
    if name == NO:
        return False
    if name == "on-failure":
        return exit_code != 0 and (most == 0 or restart_count < most)
    return True


def backoff_s(last_delay_s: float, ran_s: float) -> float:
    """How long to wait before the next start (docker's: doubling the last wait from
    100 ms, at most a minute; a run of 10 s or more starts the doubling over)."""
    if ran_s >= STEADY_S or last_delay_s <= 0:
        return FIRST_DELAY_S
    return min(MAX_DELAY_S, last_delay_s * 2)
