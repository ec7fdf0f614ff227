"""Health checks: the flags, the image's HEALTHCHECK, docker's rules for the results."""

from __future__ import annotations

import pytest

from boxlite_cli.cli.ps import status_text
from boxlite_cli.errors import ImageError, UsageError
from boxlite_cli.runtime.boxfilter import parse_filters
from boxlite_cli.shim.health import _seconds
from boxlite_cli.state.durations import duration_ns
from boxlite_cli.state.health import (
    HEALTHY,
    MAX_LOG,
    MAX_OUTPUT_BYTES,
    STARTING,
    UNHEALTHY,
    Health,
    HealthConfig,
    HealthResult,
    box_health,
    cut_output,
    health_from_flags,
    image_health,
    next_check_in,
    parse_health_duration,
    recorded,
    started,
)
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status


def flags(cmd: str | None = None, interval: str | None = None, timeout: str | None = None,
          start_period: str | None = None, start_interval: str | None = None,
          retries: int | None = None, none: bool = False) -> HealthConfig | None:
    return health_from_flags(cmd, interval, timeout, start_period, start_interval, retries, none)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1.5h", 5400.0), ("0", 0.0), ("0s", 0.0),
    ("2us", None), ("1", None), ("-1s", None), ("", None), ("1x", None), ("s", None),
    ("9000h", None), ("-0s", None)])
def test_health_durations_are_gos_with_a_unit(text: str, seconds: float | None) -> None:
    if seconds is None:
        with pytest.raises(UsageError, match=r"invalid --health-interval"):
            parse_health_duration(text, "--health-interval")
    else:
        assert parse_health_duration(text, "--health-interval") == seconds


def test_go_durations_sum_their_parts() -> None:
    assert duration_ns("1h2m3s4ms5us6ns") == 3_723_004_005_006
    assert duration_ns("1.5s") == 1_500_000_000 and duration_ns(".5m") == 30_000_000_000
    assert duration_ns("1s2") is None and duration_ns("1 s") is None


def test_no_flag_is_no_users_check_and_a_command_is_run_by_the_shell() -> None:
    assert flags() is None
    user = flags("curl -f localhost || exit 1", interval="5s", retries=2)
    assert user == HealthConfig(test=["CMD-SHELL", "curl -f localhost || exit 1"],
                                interval_s=5.0, retries=2)
    assert user.argv == ["/bin/sh", "-c", "curl -f localhost || exit 1"]
    assert flags(none=True) == HealthConfig(test=["NONE"])


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"cmd": "true", "none": True}, "--no-healthcheck conflicts with the --health-* options"),
    ({"interval": "1s", "none": True}, "--no-healthcheck conflicts"),
    ({"retries": -1}, "invalid --health-retries -1"),
    ({"cmd": "  "}, "invalid --health-cmd: it is empty"),
    ({"timeout": "10"}, "invalid --health-timeout '10': want a duration with its unit"),
    ({"interval": "-1s"}, "invalid --health-interval '-1s': it cannot be negative"),
])
def test_bad_health_flags_are_refused(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(UsageError, match=says.replace("*", r"\*").replace("(", r"\(")):
        flags(**kwargs)  # type: ignore[arg-type]


def test_the_images_check_is_read_from_nanoseconds() -> None:
    config = image_health({"Healthcheck": {"Test": ["CMD", "/bin/check", "--quick"],
                                           "Interval": 10_000_000_000, "Retries": 5,
                                           "StartPeriod": 60_000_000_000}})
    assert config == HealthConfig(test=["CMD", "/bin/check", "--quick"], interval_s=10.0,
                                  start_period_s=60.0, retries=5)
    assert config.argv == ["/bin/check", "--quick"]
    assert image_health({}) is None and image_health({"Healthcheck": None}) is None


@pytest.mark.parametrize("raw", [
    "curl", {"Test": "curl"}, {"Test": ["SHELL", "x"]}, {"Test": ["CMD"]},
    {"Test": ["CMD-SHELL", "a", "b"]}, {"Test": ["CMD", "x"], "Interval": "30s"},
    {"Test": ["CMD", "x"], "Interval": -5}, {"Test": ["CMD", "x"], "Retries": -1},
    {"Test": ["CMD", "x\0y"]}])
def test_a_malformed_image_check_is_an_image_error(raw: object) -> None:
    with pytest.raises(ImageError, match="invalid image config: Healthcheck"):
        image_health({"Healthcheck": raw})


def test_the_users_settings_go_over_the_images_field_by_field() -> None:
    image = HealthConfig(test=["CMD", "/bin/check"], interval_s=10.0, timeout_s=3.0, retries=5)
    merged = box_health(flags(interval="2s"), image)
    assert merged == HealthConfig(test=["CMD", "/bin/check"], interval_s=2.0, timeout_s=3.0,
                                  retries=5)
    mine = box_health(flags("true"), image)
    assert mine is not None and mine.test == ["CMD-SHELL", "true"] and mine.retries == 5
    for off in (box_health(flags(none=True), image),  # --no-healthcheck
                box_health(None, HealthConfig(test=["NONE"]))):  # the image's HEALTHCHECK NONE
        assert off is not None and not off.enabled and off.to_image_json() == {"Test": ["NONE"]}
    assert box_health(flags(interval="2s"), None) is None  # timing alone checks nothing
    assert box_health(None, image) == image


def result(code: int, at: float = 100.0) -> HealthResult:
    return HealthResult(start=at, end=at + 0.1, exit_code=code, output=f"exit {code}\n")


def test_failures_in_a_row_make_a_box_unhealthy_and_a_success_heals_it() -> None:
    config = HealthConfig(test=["CMD", "x"], retries=2)
    health = started(None)
    assert health == Health(status=STARTING)
    health = recorded(health, result(1), config, started_at=0.0)
    assert (health.status, health.failing_streak) == (STARTING, 1)
    health = recorded(health, result(1), config, started_at=0.0)
    assert (health.status, health.failing_streak) == (UNHEALTHY, 2)
    health = recorded(health, result(0), config, started_at=0.0)
    assert (health.status, health.failing_streak) == (HEALTHY, 0)
    health = recorded(health, result(2), config, started_at=0.0)
    assert (health.status, health.failing_streak) == (HEALTHY, 1)
    assert [r.exit_code for r in health.log] == [1, 1, 0, 2]


def test_failures_in_the_start_period_count_only_once_a_check_passed() -> None:
    config = HealthConfig(test=["CMD", "x"], start_period_s=60.0, retries=1)
    health = recorded(started(None), result(1, at=30.0), config, started_at=0.0)
    assert (health.status, health.failing_streak) == (STARTING, 0)
    healthy = recorded(health, result(0, at=40.0), config, started_at=0.0)
    failed = recorded(healthy, result(1, at=50.0), config, started_at=0.0)
    assert (failed.status, failed.failing_streak) == (UNHEALTHY, 1)  # (it had started)
    late = recorded(health, result(1, at=61.0), config, started_at=0.0)
    assert (late.status, late.failing_streak) == (UNHEALTHY, 1)


def test_the_last_five_results_are_kept_across_a_restart() -> None:
    config = HealthConfig(test=["CMD", "x"])
    health = started(None)
    for n in range(8):
        health = recorded(health, result(n, at=float(n)), config, started_at=0.0)
    assert [r.exit_code for r in health.log] == [3, 4, 5, 6, 7] and len(health.log) == MAX_LOG
    again = started(health)
    assert (again.status, again.failing_streak, again.log) == (STARTING, 0, health.log)
    assert Health.from_json(again.to_json()) == again


def test_checks_come_every_start_interval_in_the_start_period_then_every_interval() -> None:
    config = HealthConfig(test=["CMD", "x"], interval_s=30.0, start_period_s=100.0,
                          start_interval_s=2.0)
    starting, healthy = Health(), Health(status=HEALTHY)
    assert next_check_in(config, starting, started_at=0.0, now=10.0) == 2.0
    assert next_check_in(config, healthy, started_at=0.0, now=10.0) == 30.0
    assert next_check_in(config, starting, started_at=0.0, now=99.0) == pytest.approx(1.0)
    assert next_check_in(config, starting, started_at=0.0, now=90.0) == 2.0  # (start interval
    # to the period's end, not only while more than an interval is left: docker 25's)
    assert next_check_in(config, healthy, started_at=0.0, now=90.0) == pytest.approx(10.0)
    assert next_check_in(config, starting, started_at=0.0, now=150.0) == 30.0
    assert next_check_in(HealthConfig(test=["CMD", "x"]), starting, 0.0, 0.0) == 30.0


def test_a_checks_output_is_kept_to_4_kib() -> None:
    assert cut_output(b"ok\n") == "ok\n"
    assert cut_output(b"x" * (MAX_OUTPUT_BYTES + 1)) == "x" * MAX_OUTPUT_BYTES + "..."
    assert cut_output(b"\xff") == "\ufffd"


def test_a_timeout_reads_as_gos_duration() -> None:
    assert [_seconds(s) for s in (30.0, 1.0, 0.5, 90.0, 3600.0)] == [
        "30s", "1s", "500ms", "1m30s", "1h0m0s"]


def box(health: Health | None, status: Status = Status.RUNNING) -> BoxState:
    return BoxState(id="a" * 64, name="web", status=status, started_at=1.0, health=health,
                    config=BoxConfig(image="img", image_id="sha256:" + "0" * 64,
                                     rootfs_base="", process=ProcessSpec(["sh"])))


def test_ps_shows_the_health_of_a_running_box_as_docker_does() -> None:
    assert status_text(box(Health())).endswith(" (health: starting)")
    assert status_text(box(Health(status=UNHEALTHY))).endswith(" (unhealthy)")
    assert status_text(box(Health(status=HEALTHY))).endswith(" (healthy)")
    assert "(" not in status_text(box(None))
    assert "health" not in status_text(box(Health(status=HEALTHY), Status.EXITED))


def test_ps_filters_on_health() -> None:
    assert parse_filters(["health=healthy"]).matches(box(Health(status=HEALTHY)))
    assert not parse_filters(["health=healthy"]).matches(box(Health()))
    assert parse_filters(["health=none"]).matches(box(None))
    assert not parse_filters(["health=healthy"]).needs_all
    with pytest.raises(UsageError, match="invalid filter 'health=sick'"):
        parse_filters(["health=sick"])
