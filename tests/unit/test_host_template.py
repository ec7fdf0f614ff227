"""`inspect --format` templates."""

from __future__ import annotations

import pytest

from boxlite_cli.cli.template import render
from boxlite_cli.errors import UsageError

RECORD = {"id": "abc", "name": "web", "status": "exited", "exit_code": 3, "error": None,
          "config": {"image": "localhost/debian:bookworm", "process": {"argv": ["sh", "-c", "x"]}},
          "accel": "tcg", "detach": True, "oom_killed": False}


@pytest.mark.parametrize(("template", "expected"), [
    ("{{.Name}}", "web"),
    ("{{.Status}} {{.ExitCode}}", "exited 3"),
    ("{{ .exit_code }}", "3"),
    ("{{.Config.Image}}", "localhost/debian:bookworm"),
    ("{{json .Config.Process.Argv}}", '["sh","-c","x"]'),
    ("{{.Config.Process}}", "map[argv:[sh -c x]]"),  # (as Go prints a map)
    ("{{.Config.Process.Argv}}", "[sh -c x]"),
    ("{{.Error}}", "<no value>"),
    ("{{.Detach}}", "true"),
    ("id={{.Id}}!", "id=abc!"),
    ("{{.OOMKilled}}", "false"),  # (an acronym: oom_killed)
])
def test_render(template: str, expected: str) -> None:
    assert render(template, RECORD) == expected


@pytest.mark.parametrize("template", ["{{.Nope}}", "{{.Name.Deeper}}"])
def test_unknown_fields_are_usage_errors(template: str) -> None:
    with pytest.raises(UsageError, match="template"):
        render(template, RECORD)


@pytest.mark.parametrize("template", ["{{.Status", "x {{ .Status } y",
                                      "{{range .Config.Cmd}}{{.}} {{end}}",
                                      "{{index .Config.Env 0}}", "{{if .Running}}up{{end}}",
                                      '{{index .Config.Env "a" "b"}}'])
def test_what_it_does_not_support_is_an_error_not_text(template: str) -> None:
    with pytest.raises(UsageError, match=r"not closed|unsupported action") as e:
        render(template, {"Status": "running", "Config": {"Cmd": ["a"], "Env": ["A=1"]},
                          "Running": True})
    assert e.value.hint and "{{json .Field}}" in e.value.hint


def test_text_around_actions_and_a_lone_closing_brace_pair() -> None:
    assert render("[{{.Status}}] }} {{ json .Config.Cmd }}",
                  {"Status": "up", "Config": {"Cmd": ["a"]}}) == '[up] }} ["a"]'


LABELLED = {"name": "web", "config": {"labels": {"job": "1", "com.example.proj": "x"}}}


def test_labels_by_key_and_by_index_and_a_missing_one_is_no_value() -> None:
    assert render("{{.Config.Labels.job}}", LABELLED) == "1"
    assert render('{{index .Config.Labels "com.example.proj"}}', LABELLED) == "x"
    assert render("{{.Config.Labels.nope}}|{{index .Config.Labels \"nope\"}}", LABELLED) == (
        "<no value>|<no value>")
    with pytest.raises(UsageError, match="no field 'Nope'"):  # (a field: still an error)
        render("{{.Config.Nope}}", LABELLED)
    with pytest.raises(UsageError, match="not a map"):
        render('{{index .Name "x"}}', LABELLED)


def test_tab_and_newline_escapes_and_table_headers() -> None:
    from boxlite_cli.cli.template import header

    assert render("{{.Name}}\\t{{.Config.Labels.job}}\\n", LABELLED) == "web\t1\n"
    assert header("{{.Names}}\\t{{.RunningFor}}\\t{{index .Config.Labels \"a\"}}") == (
        "NAMES\tRUNNING FOR\tLABELS")


def test_maps_print_as_go_prints_them_keys_sorted_and_json_keeps_json() -> None:
    record = {"labels": {"b": "2", "a": "1"}, "env": [], "nested": {"x": None, "y": [True]}}
    assert render("{{.Labels}}", record) == "map[a:1 b:2]"
    assert render("{{.Env}}|{{.Nested}}", record) == "[]|map[x:<nil> y:[true]]"
    assert render("{{json .Labels}}", record) == '{"b":"2","a":"1"}'


def test_label_by_key_as_docker_ps_has_it_and_a_missing_one_is_empty() -> None:
    from boxlite_cli.cli.template import header

    record = {"Names": "web", "Label": {"com.example.job": "42"}}
    assert render('{{.Names}}={{.Label "com.example.job"}}', record) == "web=42"
    assert render('[{{.Label "nope"}}]', record) == "[]"
    assert header('{{.Names}}\\t{{ .Label "com.example.job" }}') == "NAMES\tLABEL"
    with pytest.raises(UsageError, match="not a map"):
        render('{{.Names "x"}}', record)
