"""Signal names as users and images write them (`KILL`, `SIGKILL`, `kill`, `9`)."""

from __future__ import annotations

import re
import signal

from boxlite_cli.errors import UsageError

DEFAULT_STOP_SIGNAL = "SIGTERM"
_REALTIME = re.compile(r"SIGRT(MIN|MAX)([+-]\d{1,2})?")


def parse_signal(text: str) -> int:
    """`KILL`, `SIGKILL`, `kill` or `9` → 9; UsageError for anything else."""
    if text.isdigit():
        num = int(text)
        if not 0 < num < signal.NSIG:
            raise UsageError(f"invalid signal: {text}")
        return num
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    if found := _REALTIME.fullmatch(name):  # SIGRTMIN+3 (systemd's images stop with it)
        base = signal.SIGRTMIN if found.group(1) == "MIN" else signal.SIGRTMAX
        num = int(base) + int(found.group(2) or 0)
        if not signal.SIGRTMIN <= num <= signal.SIGRTMAX:
            raise UsageError(f"invalid signal: {text}")
        return num
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise UsageError(f"invalid signal: {text}") from None


def signal_name(num: int) -> str:
    """9 → `SIGKILL`; a number without a name (a real-time signal) stays a number."""
    try:
        return signal.Signals(num).name
    except ValueError:
        return str(num)


def stop_signal(given: str | None, image_config_value: str) -> str:
    """The signal `stop` sends a box's main process: --stop-signal, else the image's
    StopSignal, else SIGTERM (as docker); its canonical name. UsageError when bad."""
    text = given if given is not None else image_config_value
    if not text:
        return DEFAULT_STOP_SIGNAL
    try:
        return signal_name(parse_signal(text))
    except UsageError:
        where = "--stop-signal" if given is not None else "the image's StopSignal"
        raise UsageError(f"invalid signal {text!r} in {where}",
                         hint="a name (SIGTERM, TERM, term) or a number (15)") from None
