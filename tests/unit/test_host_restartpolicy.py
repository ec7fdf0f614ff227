"""docker's restart policies: parsing, which ends restart a box, and the backoff."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.state.restartpolicy import backoff_s, parse_restart, policy_parts, restarts


@pytest.mark.parametrize(("given", "kept"), [
    ("no", "no"), ("", "no"), ("always", "always"), ("unless-stopped", "unless-stopped"),
    ("on-failure", "on-failure"), ("on-failure:3", "on-failure:3"),
    ("on-failure:0", "on-failure")])
def test_policies_are_kept_normalized(given: str, kept: str) -> None:
    assert parse_restart(given) == kept


@pytest.mark.parametrize(("given", "says"), [
    ("bogus", "a policy is no, always"), ("NO", "a policy is no"), ("always:3", "only on-failure"),
    ("on-failure:-1", "a policy is"), ("on-failure:x", "a policy is")])
def test_bad_policies_are_usage_errors(given: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse_restart(given)


def test_which_ends_restart_the_box() -> None:
    assert not restarts("no", 1, 0)
    assert restarts("always", 0, 50) and restarts("unless-stopped", 0, 0)
    assert restarts("on-failure", 1, 1000) and not restarts("on-failure", 0, 0)
    assert restarts("on-failure:2", 3, 1) and not restarts("on-failure:2", 3, 2)
    assert policy_parts("on-failure:2") == ("on-failure", 2)
    assert policy_parts("always") == ("always", 0)


def test_the_backoff_doubles_to_a_minute_and_starts_over_after_a_steady_run() -> None:
    """From the last wait, not the count of restarts: a box that crashed now and then
    for days and then loops starts from 100 ms again (docker's)."""
    delays = [0.0]
    for _ in range(12):
        delays.append(backoff_s(delays[-1], 1.0))
    assert delays[1:5] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 60.0  # (at most a minute)
    assert backoff_s(60.0, 10.0) == 0.1  # (after a steady run)
    assert backoff_s(backoff_s(60.0, 3600.0), 1.0) == 0.2
