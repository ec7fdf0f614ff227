"""Health checks, as docker's (an image's HEALTHCHECK, `--health-*`): what a box's
check is, and the health its results make.

While the box runs, its shim runs the check in it every interval (shim/health.py), as
an exec of the box's user, working directory and environment: `CMD-SHELL` through
`/bin/sh -c`, `CMD` as it is. Exit 0 is healthy; anything else, or a check that ran
past its timeout, is a failure. The box turns unhealthy after `retries` failures in a
row, and healthy again at the next success; failures in the start period do not count
until a check has passed. The last five results are kept, each with the first 4 KiB
of what the check wrote. Health is shown, not acted on: as docker does without swarm,
an unhealthy box is not restarted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from boxlite_cli.errors import ImageError, UsageError
from boxlite_cli.state.durations import duration_ns

NONE, CMD, CMD_SHELL = "NONE", "CMD", "CMD-SHELL"
STARTING, HEALTHY, UNHEALTHY, NO_HEALTHCHECK = "starting", "healthy", "unhealthy", "none"
HEALTH_STATES = (STARTING, HEALTHY, UNHEALTHY, NO_HEALTHCHECK)
# docker's defaults (daemon/health.go), used where a value is 0
DEFAULT_INTERVAL_S = 30.0
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_START_INTERVAL_S = 5.0
DEFAULT_RETRIES = 3
MIN_DURATION_S = 0.001  # (docker refuses a non-zero one below 1 ms)
MAX_DURATION_S = 365 * 24 * 3600.0
MAX_RETRIES = 1_000_000
MAX_OUTPUT_BYTES = 4096  # of a check's output, kept with its result ("..." when cut)
MAX_LOG = 5  # results kept
MAX_TEST_BYTES = 64 * 1024  # of a check's command line
SHELL = ("/bin/sh", "-c")
_DURATIONS = ("interval_s", "timeout_s", "start_period_s", "start_interval_s")


@dataclass
class HealthConfig:
    """A box's health check (docker's Config.Healthcheck); 0 means docker's default."""

    test: list[str] = field(default_factory=list)  # [CMD, argv...], [CMD-SHELL, cmd], [NONE]
    interval_s: float = 0.0
    timeout_s: float = 0.0
    start_period_s: float = 0.0
    start_interval_s: float = 0.0
    retries: int = 0

    @property
    def enabled(self) -> bool:
        return len(self.test) > 1 and self.test[0] in (CMD, CMD_SHELL)

    @property
    def argv(self) -> list[str]:
        """What the check executes in the box."""
        return [*SHELL, *self.test[1:]] if self.test[0] == CMD_SHELL else self.test[1:]

    @property
    def interval(self) -> float:
        return self.interval_s or DEFAULT_INTERVAL_S

    @property
    def timeout(self) -> float:
        return self.timeout_s or DEFAULT_TIMEOUT_S

    @property
    def start_interval(self) -> float:
        return self.start_interval_s or DEFAULT_START_INTERVAL_S

    @property
    def tries(self) -> int:
        return self.retries or DEFAULT_RETRIES

    def to_image_json(self) -> dict[str, Any]:
        """As an image config and docker's inspect have it (durations in nanoseconds;
        what is 0, the default, left out)."""
        given = {"Interval": round(self.interval_s * 1e9), "Timeout": round(self.timeout_s * 1e9),
                 "StartPeriod": round(self.start_period_s * 1e9),
                 "StartInterval": round(self.start_interval_s * 1e9), "Retries": self.retries}
        return {"Test": list(self.test), **{k: v for k, v in given.items() if v}}

    def merged_over(self, image: HealthConfig | None) -> HealthConfig:
        """This (the user's) over the image's, field by field, as docker merges them."""
        if image is None or self.test == [NONE]:
            return self
        return HealthConfig(
            test=self.test or image.test,
            **{name: getattr(self, name) or getattr(image, name)
               for name in (*_DURATIONS, "retries")})

    @classmethod
    def from_json(cls, data: Any) -> HealthConfig | None:
        if data is None:
            return None
        return cls(**data)


def health_config_problem(config: HealthConfig) -> str | None:
    """What docker would refuse in `config` (from an image or an archive: any JSON);
    None when nothing."""
    test = config.test
    if (not isinstance(test, list) or not all(isinstance(t, str) for t in test)
            or sum(len(t.encode()) for t in test) > MAX_TEST_BYTES):
        return f"the test must be a list of strings (at most {MAX_TEST_BYTES} bytes)"
    if any("\0" in t for t in test):
        return "the test has a NUL character"
    if test and test[0] not in (NONE, CMD, CMD_SHELL):
        return f"unknown test type {test[0]!r} (want {CMD}, {CMD_SHELL} or {NONE})"
    if test and test[0] in (CMD, CMD_SHELL) and (len(test) < 2 or not test[1]):
        return f"{test[0]} needs a command"
    if test and test[0] == CMD_SHELL and len(test) != 2:
        return f"{CMD_SHELL} takes one command line"
    for name in _DURATIONS:
        value = getattr(config, name)
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not (value == 0 or MIN_DURATION_S <= value <= MAX_DURATION_S)):
            return (f"{name.removesuffix('_s').replace('_', ' ')} must be 0 (the default) "
                    f"or between 1ms and {int(MAX_DURATION_S // 3600)}h")
    if (not isinstance(config.retries, int) or isinstance(config.retries, bool)
            or not 0 <= config.retries <= MAX_RETRIES):
        return f"retries must be between 0 (the default) and {MAX_RETRIES}"
    return None


def parse_health_duration(text: str, option: str) -> float:
    """A `--health-*` duration in seconds (Go's syntax: 30s, 1m30s, 500ms; 0: the
    default)."""
    if text.strip().startswith("-"):
        raise UsageError(f"invalid {option} {text!r}: it cannot be negative")
    ns = duration_ns(text.strip())
    if ns is None:
        raise UsageError(f"invalid {option} {text!r}: want a duration with its unit "
                         "(30s, 1m30s, 500ms)")
    seconds = ns / 1e9
    if seconds and not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
        raise UsageError(f"invalid {option} {text!r}: want 0 (the default) or between 1ms "
                         f"and {int(MAX_DURATION_S // 3600)}h")
    return seconds


def health_from_flags(cmd: str | None, interval: str | None, timeout: str | None,
                      start_period: str | None, start_interval: str | None,
                      retries: int | None, no_healthcheck: bool) -> HealthConfig | None:
    """The user's health check (docker's run flags); None when no flag was given."""
    tuned = (interval, timeout, start_period, start_interval, retries)
    if no_healthcheck:
        if cmd is not None or any(v is not None for v in tuned):
            raise UsageError("--no-healthcheck conflicts with the --health-* options")
        return HealthConfig(test=[NONE])
    if cmd is None and all(v is None for v in tuned):
        return None
    if retries is not None and not 0 <= retries <= MAX_RETRIES:
        raise UsageError(f"invalid --health-retries {retries}: want 0 (the default) to "
                         f"{MAX_RETRIES}")
    if cmd is not None and not cmd.strip():
        raise UsageError("invalid --health-cmd: it is empty")
    if cmd is not None and "\0" in cmd:
        raise UsageError("invalid --health-cmd: it has a NUL character")

    def seconds(text: str | None, option: str) -> float:
        return 0.0 if text is None else parse_health_duration(text, option)

    return HealthConfig(
        test=[CMD_SHELL, cmd] if cmd is not None else [],
        interval_s=seconds(interval, "--health-interval"),
        timeout_s=seconds(timeout, "--health-timeout"),
        start_period_s=seconds(start_period, "--health-start-period"),
        start_interval_s=seconds(start_interval, "--health-start-interval"),
        retries=retries or 0)


def image_health(image_config: dict[str, Any]) -> HealthConfig | None:
    """The image's HEALTHCHECK (Config.Healthcheck: Go durations in nanoseconds)."""
    raw = image_config.get("Healthcheck")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ImageError("invalid image config: Healthcheck must be an object")

    def seconds(key: str) -> float:
        value = raw.get(key) or 0
        if not isinstance(value, int) or isinstance(value, bool):
            raise ImageError(f"invalid image config: Healthcheck.{key} must be nanoseconds")
        return value / 1e9

    config = HealthConfig(test=raw.get("Test") or [], interval_s=seconds("Interval"),
                          timeout_s=seconds("Timeout"), start_period_s=seconds("StartPeriod"),
                          start_interval_s=seconds("StartInterval"),
                          retries=raw.get("Retries") or 0)
    problem = health_config_problem(config)
    if problem is not None:
        raise ImageError(f"invalid image config: Healthcheck: {problem}")
    return config


def box_health(user: HealthConfig | None, image: HealthConfig | None) -> HealthConfig | None:
    """The box's health check: the user's over the image's; [NONE] when one of them
    says so (kept, as docker's config keeps it); None when there is none."""
    config = user.merged_over(image) if user is not None else image
    if config is None or not (config.enabled or config.test[:1] == [NONE]):
        return None
    return config


@dataclass
class HealthResult:
    """One run of the check (docker's HealthcheckResult)."""

    start: float  # Unix times
    end: float
    exit_code: int  # -1: it could not run, or ran past its timeout
    output: str


@dataclass
class Health:
    """A running box's health (docker's State.Health)."""

    status: str = STARTING
    failing_streak: int = 0
    log: list[HealthResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Health | None:
        if data is None:
            return None
        return cls(status=data["status"], failing_streak=data["failing_streak"],
                   log=[HealthResult(**r) for r in data["log"]])


def started(before: Health | None) -> Health:
    """A box's health as it starts: starting, no failures, the last run's results kept."""
    return Health(log=list(before.log) if before is not None else [])


def recorded(health: Health, result: HealthResult, config: HealthConfig,
             started_at: float) -> Health:
    """`health` after `result` (docker's rules: see the module doc)."""
    log = [*health.log, result][-MAX_LOG:]
    if result.exit_code == 0:
        return Health(status=HEALTHY, failing_streak=0, log=log)
    in_start_period = (health.status == STARTING
                       and result.start - started_at < config.start_period_s)
    if in_start_period:
        return Health(status=health.status, failing_streak=health.failing_streak, log=log)
    streak = health.failing_streak + 1
    status = UNHEALTHY if streak >= config.tries else health.status
    return Health(status=status, failing_streak=streak, log=log)


def next_check_in(config: HealthConfig, health: Health, started_at: float, now: float) -> float:
    """Seconds to the next check: the start interval while the box starts, within its
    start period; else the interval; and the start period's end, if that comes first."""
    left = config.start_period_s - (now - started_at)
    if left <= 0:
        return config.interval
    return min(config.start_interval if health.status == STARTING else config.interval, left)


def cut_output(data: bytes) -> str:
    """What a check wrote, as kept with its result."""
    text = data[:MAX_OUTPUT_BYTES].decode(errors="replace")
    return text + "..." if len(data) > MAX_OUTPUT_BYTES else text
