"""Signal names (runtime/signals.py) and a box's stop signal and hostname checks."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import ImageError, UsageError
from boxlite_cli.runtime.signals import parse_signal, signal_name, stop_signal
from boxlite_cli.runtime.spec import check_hostname, image_stop_signal


@pytest.mark.parametrize("text", ["KILL", "SIGKILL", "kill", "9"])
def test_signal_spellings(text: str) -> None:
    assert parse_signal(text) == 9


@pytest.mark.parametrize("text", ["", "0", "65", "SIGNOPE", "-9", "9x"])
def test_bad_signals(text: str) -> None:
    with pytest.raises(UsageError, match="invalid signal"):
        parse_signal(text)


def test_stop_signal_option_then_image_then_sigterm() -> None:
    assert stop_signal("usr1", "SIGQUIT") == "SIGUSR1"
    assert stop_signal(None, "SIGQUIT") == "SIGQUIT"
    assert stop_signal(None, "3") == "SIGQUIT"
    assert stop_signal(None, "") == "SIGTERM"
    assert signal_name(40) == "40"  # a real-time signal has no name


def test_a_bad_stop_signal_names_where_it_came_from() -> None:
    with pytest.raises(UsageError, match="'FOO' in --stop-signal"):
        stop_signal("FOO", "")
    with pytest.raises(UsageError, match="'FOO' in the image's StopSignal"):
        stop_signal(None, "FOO")


def test_image_stop_signal_must_be_a_string() -> None:
    assert image_stop_signal({}) == "" and image_stop_signal({"StopSignal": None}) == ""
    assert image_stop_signal({"StopSignal": "SIGINT"}) == "SIGINT"
    with pytest.raises(ImageError):
        image_stop_signal({"StopSignal": 15})


@pytest.mark.parametrize("name", ["web", "web-1.local", "a" * 63, "x_y", "0box"])
def test_good_hostnames(name: str) -> None:
    check_hostname(name)


@pytest.mark.parametrize("name", ["", "-x", ".x", "a" * 64, "a b", "a/b", "ä"])
def test_bad_hostnames(name: str) -> None:
    with pytest.raises(UsageError, match="invalid hostname"):
        check_hostname(name)
