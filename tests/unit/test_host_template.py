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


@pytest.mark.parametrize("template", ["{{.Status", "x {{ .Status } y", "a {{ .Status"])
def test_an_action_left_open_is_an_error_not_text(template: str) -> None:
    with pytest.raises(UsageError) as e:
        render(template, {"Status": "running"})
    assert e.value.message == f"template {template!r}: an action is not closed with }}}}"
    assert e.value.hint and "text/template" in e.value.hint and "{{range .List}}" in e.value.hint


@pytest.mark.parametrize(("template", "expected"), [
    ("{{range .Config.Cmd}}{{.}} {{end}}", "a b "),
    ("{{index .Config.Env 0}}", "A=1"),
    ("{{if .Running}}up{{end}}", "up"),
])
def test_what_the_old_subset_refused_now_works(template: str, expected: str) -> None:
    assert render(template, {"Status": "running", "Config": {"Cmd": ["a", "b"], "Env": ["A=1"]},
                             "Running": True}) == expected


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


def test_a_rows_method_is_no_field_of_its_json() -> None:
    """ps' `{{.Label "k"}}` works, and `{{json .}}` has docker's keys alone (no Label)."""
    from boxlite_cli.cli.template import Row

    row = Row({"Names": "web", "Labels": "job=42"}, methods={"Label": {"job": "42"}})
    assert render('{{.Names}}={{.Label "job"}}[{{.Label "nope"}}]', row) == "web=42[]"
    assert render("{{json .}}", row) == '{"Names":"web","Labels":"job=42"}'


# --- Go's text/template: the language docker users write --------------------------------

BOX = {
    "id": "f00dfeed", "name": "web", "image": "localhost/debian:bookworm",
    "args": ["sh", "-c", "echo hi"],
    "state": {"status": "exited", "running": False, "oom_killed": False, "exit_code": 3, "pid": 0},
    "config": {"labels": {"com.example.key": "v1", "job": "1"}, "env": ["A=1", "B=2"], "cmd": None},
    "mounts": [{"source": "/src", "destination": "/dst", "rw": True},
               {"source": "vol", "destination": "/data", "rw": False}],
    "network_settings": {"ports": {"80/tcp": [{"host_ip": "0.0.0.0", "host_port": "8080"}],
                                   "443/tcp": [{"host_ip": "", "host_port": "8443"}]}},
    "cpu": 12.5, "memory": 1048576.0, "empty": [], "nothing": None, "zero": 0,
}


@pytest.mark.parametrize(("template", "expected"), [
    # docker's idioms
    ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", "/src:/dst vol:/data "),
    ('{{range $p, $conf := .NetworkSettings.Ports}}{{$p}} -> {{(index $conf 0).HostPort}}{{"\\n"}}'
     "{{end}}", "443/tcp -> 8443\n80/tcp -> 8080\n"),  # (a map: its keys in order)
    ("{{if .State.Running}}up{{else}}down{{end}}", "down"),
    ('{{if eq .State.Status "exited"}}exited {{.State.ExitCode}}{{end}}', "exited 3"),
    ('{{join .Args " "}}', "sh -c echo hi"),
    ("{{upper .Name}} {{lower .State.Status}} {{title .Name}}", "WEB exited Web"),
    ("{{len .Mounts}} {{len .Name}} {{len .Config.Labels}} {{len .Empty}}", "2 3 2 0"),
    ('{{printf "%s:%d" .Name .State.ExitCode}}', "web:3"),
    ("{{println .Name}}", "web\n"),
    ("{{json .Config}}", '{"labels":{"com.example.key":"v1","job":"1"},"env":["A=1","B=2"],"cmd":null}'),
    ("{{json .Name}} {{json .Cpu}} {{json .Nothing}}", '"web" 12.5 null'),
    ("{{with .State}}{{.Status}}/{{.ExitCode}}{{end}}", "exited/3"),
    ("a  {{- .Name -}}  b", "awebb"),
    ("a {{- .Name}} b", "aweb b"),
    ("{{.Name}}\\n {{- .Id}}", "webf00dfeed"),  # (`\n` is a newline, which the marker trims)
    ("{{/* a comment */}}x{{- /* trimmed */ -}} y", "xy"),
    ("{{$x := .Name}}{{$x}}", "web"),
    ("{{.Name | upper}} {{.Name | printf \"%s!\"}} {{.Args | len}}", "WEB web! 3"),
    ('{{index .Config.Labels "com.example.key"}}', "v1"),
    ("{{(index .Args 0)}} {{index .Args 2}}", "sh echo hi"),
    ('{{index .NetworkSettings.Ports "80/tcp" 0 "host_port"}}', "8080"),
    ("{{range $i, $a := .Args}}{{$i}}={{$a}} {{end}}", "0=sh 1=-c 2=echo hi "),
    ("{{range .Args}}{{.}}{{else}}none{{end}}|{{range .Empty}}{{.}}{{else}}none{{end}}",
     "sh-cecho hi|none"),
    ("{{range .Nothing}}x{{else}}nil: none{{end}}", "nil: none"),
    ('{{split .Image ":"}} {{index (split .Image ":") 1}}', "[localhost/debian bookworm] bookworm"),
    ("{{range .Mounts}}{{$.Name}}:{{.Source}}({{range $.Args}}{{len .}}{{end}}) {{end}}",
     "web:/src(227) web:vol(227) "),
    ("{{range $m := .Mounts}}{{range $.Args}}{{$m.Source}}{{end}}|{{end}}", "/src/src/src|volvolvol|"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "com.example.key=v1;job=1;"),
    ("{{range $v := .Config.Labels}}{{$v}};{{end}}", "v1;1;"),
    # if, else if, with, else with
    ("{{if .Zero}}a{{else if .Empty}}b{{else if .Name}}c{{else}}d{{end}}", "c"),
    ("{{if .Nothing}}a{{else}}b{{end}}{{if .Config.Labels}}c{{end}}{{if .Cpu}}d{{end}}", "bcd"),
    ("{{with .Nothing}}a{{else with .Name}}{{.}}{{end}}", "web"),
    ("{{with .Empty}}a{{else}}empty{{end}}", "empty"),
    ("{{with $s := .State}}{{$s.ExitCode}}{{.Status}}{{end}}", "3exited"),
    ("{{if $n := .Name}}{{$n}}{{end}}", "web"),
    # variables: $ is the data, := declares, = assigns (also in a range)
    ("{{$.Name}} {{$.State.Status}}", "web exited"),
    ('{{$x := 1}}{{range .Args}}{{$x = .}}{{end}}{{$x}}', "echo hi"),
    ('{{$x := "a"}}{{if 1}}{{$x := "b"}}{{$x}}{{end}}{{$x}}', "ba"),
    ("{{$i := 9}}{{range $i, $e := .Args}}{{end}}{{$i}}", "9"),
    ("{{range $i, $e := .Args}}{{if eq $i 1}}{{continue}}{{end}}{{if eq $i 2}}{{break}}{{end}}"
     "{{$e}}{{end}}", "sh"),
    ("{{range 3}}{{.}}{{end}} {{range $i := 2}}{{$i}}{{end}}", "012 01"),
    # and/or give the deciding value; not; comparisons
    ('{{and 1 0 2}}|{{and 1 2}}|{{or 0 "" "x"}}|{{or 0 ""}}|{{or .Nothing .Name}}', "0|2|x||web"),
    ("{{and .Nothing .Nope}}", "<no value>"),  # (the rest is not evaluated: no error)
    ("{{not .Empty}} {{not .Name}} {{not 0}}", "true false true"),
    ('{{eq 1 2 3 1}} {{eq "a" "b"}} {{eq .Nothing nil}} {{eq .Name nil}} {{ne 1 2}}',
     "true false true false true"),
    ('{{lt 1 2}} {{le 2 2}} {{gt 2.5 1}} {{ge 1 2}} {{lt "a" "b"}} {{gt "b" "a"}}',
     "true true true false true true"),
    ("{{eq .State.ExitCode 3}} {{eq 3 3.0}}", "true true"),
    # index and slice
    ("{{index .Args}}", "[sh -c echo hi]"),
    ("{{index .Name 0}}", "119"),  # (a byte, as Go's)
    ('{{index .Config.Labels "nope"}}', "<no value>"),
    ("{{slice .Name 1}} {{slice .Name 1 2}} {{slice .Args 1}} {{slice .Args 0 1 2}} {{slice .Name}}",
     "eb e [-c echo hi] [sh] web"),
    # print, printf, println: Go's spacing and verbs
    ('{{print 1 2 "a" 3 "b" "c" true}}', "1 2a3bctrue"),
    ('{{println 1 "a" .Args}}', "1 a [sh -c echo hi]\n"),
    ('{{print .Nothing}} {{printf "%v" .Nothing}}', "<nil> <nil>"),
    ('{{printf "%5.1f|%-5s|%05d|%x|%X|%q|%t|%v|%%" .Cpu .Name 42 255 255 .Name true .Args}}',
     " 12.5|web  |00042|ff|FF|\"web\"|true|[sh -c echo hi]|%"),
    ('{{printf "%d|%s|%v" .Name 3 .Config.Labels}}',
     "%!d(string=web)|%!s(int=3)|map[com.example.key:v1 job:1]"),
    ('{{printf "%d %d" 1}}|{{printf "%d" 1 2}}|{{printf "%z" 1}}|{{printf "%"}}|{{printf "%s" nil}}',
     "1 %!d(MISSING)|1%!(EXTRA int=2)|%!z(int=1)|%!(NOVERB)|%!s(<nil>)"),
    ('{{printf "%*d|%-*d|%.*f|%.2s|%6.2f%%" 5 1 4 2 2 3.14159 "héllo" 12.345}}',
     "    1|2   |3.14|hé| 12.35%"),
    ('{{printf "%+d %+d % d %#x %#o %b %o %c %U %q" 5 -5 5 255 8 5 8 65 128512 97}}',
     "+5 -5  5 0xff 010 101 10 A U+1F600 'a'"),
    ('{{printf "%e|%g|%v|%v|%v|%.3g|%08.3f" 1234.5678 1e21 .Memory .Cpu 100.0 1234.5678 -3.14159}}',
     "1.234568e+03|1e+21|1.048576e+06|12.5|100|1.23e+03|-003.142"),
    ('{{printf "%T %T %T %T %T %T" 1 "a" 1.5 true .Args .Config}}',
     "int string float64 bool []interface {} map[string]interface {}"),
    ('{{printf "%q|%x|%d|%.1f" "a\\"b\\n" "hi" 3.0 3}}', '"a\\"b\\n"|6869|3|3.0'),
    ('{{printf "%s" .Args}} {{printf "%d" .Config.Env}}',
     "[sh -c echo hi] [%!d(string=A=1) %!d(string=B=2)]"),
    # literals
    ("{{0x1F}} {{1e3}} {{-5}} {{'a'}} {{1_000}} {{true}} {{0o17}} {{017}} {{1.50}} {{.5}}",
     "31 1000 -5 97 1000 true 15 15 1.5 0.5"),
    ('{{"a\\tb"}}|{{`raw\\t{{x}}`}}|{{"\\u00e9\\x41\\101"}}', "a\tb|raw\\t{{x}}|éAA"),
    ("{{.}}", "map[args:[sh -c echo hi] config:map[cmd:<nil> env:[A=1 B=2] labels:map[com.example.key:v1 "
     "job:1]] cpu:12.5 empty:[] id:f00dfeed image:localhost/debian:bookworm memory:1.048576e+06 "
     "mounts:[map[destination:/dst rw:true source:/src] map[destination:/data rw:false source:vol]] "
     "name:web network_settings:map[ports:map[443/tcp:[map[host_ip: host_port:8443]] 80/tcp:[map["
     "host_ip:0.0.0.0 host_port:8080]]]] nothing:<nil> state:map[exit_code:3 oom_killed:false pid:0 "
     "running:false status:exited] zero:0]"),
    # Go's html, js, urlquery; docker's pad and truncate
    ('{{html "<a href=\'x\'>&</a>"}}', "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"),
    ("{{js \"it's <b>\"}} {{urlquery \"a b&c/d\"}}", "it\\'s \\u003Cb\\u003E a+b%26c%2Fd"),
    ('{{pad .Name 2 3}}|{{pad "" 2 3}}|{{truncate .Name 2}}|{{truncate .Name 9}}', "  web   ||we|web"),
    ('{{title "hello wide-world o\'neil"}}', "Hello Wide-World O'neil"),
    # \t and \n are a tab and a newline in the text, not in a raw string
    ("{{.Name}}\\t{{.Id}}\\n", "web\tf00dfeed\n"),
    ("{{`\\t`}}", "\\t"),
    # actions spread over lines
    ("{{if\n  .Name\n}}yes{{end}}", "yes"),
])
def test_go_templates(template: str, expected: str) -> None:
    assert render(template, BOX) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("{{foo .Name}}", "unknown function 'foo'"),
    ("{{if .Name}}", "{{if}} is not closed with {{end}}"),
    ("{{range .Args}}{{else}}", "{{range}} is not closed with {{end}}"),
    ("{{if 1}}{{else}}{{else}}{{end}}", "a second {{else}} in {{if}}"),
    ("{{end}}", "{{end}} without {{if}}, {{with}} or {{range}}"),
    ("{{else}}", "{{else}} without {{if}}, {{with}} or {{range}}"),
    ("{{break}}", "{{break}} outside {{range}}"),
    ("{{range .Args}}{{else}}{{continue}}{{end}}", "{{continue}} outside {{range}}"),
    ('{{define "x"}}{{end}}', "{{define}} is not supported (a --format is one template)"),
    ('{{template "x"}}', "{{template}} is not supported (a --format is one template)"),
    ("{{if}}{{end}}", "missing value for if"),
    ("{{}}", "missing value for command"),
    ("{{.Name | }}", "a | with no command after it in command"),
    ("{{.Name | 3}}", "3 cannot take the value of a pipe (stage 2 of command)"),
    ("{{$y}}", "undefined variable $y"),
    ("{{$y = 1}}", "undefined variable $y"),
    ("{{if 1}}{{$x := 1}}{{end}}{{$x}}", "undefined variable $x"),
    ("{{range $a, $b, $c := .Args}}{{end}}", "too many declarations in range"),
    ("{{$a, $b := .Args}}", "too many declarations in command"),
    ('{{"abc}}', 'a quoted string is not closed with "'),
    ("{{`abc}}", "a raw string is not closed with `"),
    ("{{'ab'}}", "bad rune 'ab'"),
    ('{{"\\q"}}', "bad escape \\q in a quoted string"),
    ('{{"\\ud800"}}', "bad escape \\ud800 in a quoted string"),
    ("{{/* open", "a comment is not closed with */"),
    ("{{/* c */ .Name}}", "a comment must end its action: {{/* ... */}}"),
    ("{{(.Name}}", "a ( is not closed with )"),
    ("{{.Name)}}", "a ) has no ( before it"),
    ("{{.Name#}}", "unexpected '#' in an action"),
    ("{{.Name : 1}}", "expected := after :"),
    ("{{1x}}", "bad number syntax: '1x'"),
    ("{{99999999999999999999}}", "number 99999999999999999999 overflows int"),
    ("{{1e999}}", "number 1e999 is out of range"),
    ('{{"x".Name}}', 'unexpected .Name after "x"'),
    ("{{1 2}}", "1 is not a function: it takes no arguments"),
    ("{{nil}}", "nil is not a command"),
    ("{{.Name.Deeper}}", "'Deeper' is not a field of string 'web'"),
    ("{{.Args 1}}", "'Args' takes no arguments: it is not a map"),
    ('{{.Config.Labels "a" "b"}}', "'Labels' takes one key (a string), as in {{.Labels \"key\"}}"),
    ("{{range .Name}}{{end}}", "range can't iterate over string 'web'"),
    ("{{range true}}{{end}}", "range can't iterate over bool true"),
    ("{{range $i, $e := 3}}{{end}}", "range over an integer (3) takes one variable"),
    ('{{index .Name "x"}}', "index of string 'web' with string 'x': not a map"),
    ('{{index .Config.Env "a" "b"}}', "index of a list with string 'a': not a map"),
    ("{{index .Nothing 1}}", "index of <nil>: not a map or a list"),
    ("{{index .Args 5}}", "index out of range: 5"),
    ("{{index .Config.Labels 1}}", "index: the key of a map is a string, not int 1"),
    ("{{slice .Args 2 1}}", "slice: invalid slice index: 2 > 1"),
    ("{{slice .Args 9}}", "slice: index out of range: 9"),
    ("{{slice .Name 0 1 2}}", "slice: a string takes 2 indexes at most"),
    ("{{slice .Cpu 0}}", "slice of float64 12.5: not a string or a list"),
    ("{{len 3}}", "len of int 3"),
    ("{{len .Nothing}}", "len of <nil>"),
    ("{{upper 3}}", "upper: its argument is int 3, not a string"),
    ("{{.Args | lower}}", "lower: its argument is a list, not a string"),
    ('{{join .Name ","}}', "join: its first argument is string 'web', not a list"),
    ('{{split .Name 1}}', "split: the separator is int 1, not a string"),
    ('{{pad .Name "x" 1}}', "pad: the prefix is string 'x', not an integer"),
    ("{{pad .Name -1 0}}", "pad: -1, 0: not a number of spaces"),
    ("{{truncate .Name -1}}", "truncate: a negative length (-1)"),
    ("{{printf 3}}", "printf: the format is int 3, not a string"),
    ("{{not 1 2}}", "not takes 1 arguments, not 2"),
    ("{{eq 1}}", "eq takes at least 2 arguments, not 1"),
    ("{{slice 1 2 3 4 5}}", "slice takes 1 to 4 arguments, not 5"),
    ("{{and}}", "and takes at least 1 arguments, not 0"),
    ('{{eq .Name 1}}', "eq: incompatible types for comparison: string 'web' and int 1"),
    ("{{eq .Args .Args}}", "eq: a list cannot be compared"),
    ('{{lt 1 "a"}}', "lt: incompatible types for comparison: int 1 and string 'a'"),
    ("{{lt true false}}", "lt: bool true cannot be ordered"),
])
def test_template_errors_name_the_template(template: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        render(template, BOX)
    assert e.value.message == f"template {template!r}: {message}"
    assert e.value.hint and "text/template" in e.value.hint and len(e.value.hint) < 120


def test_a_missing_field_hints_at_the_fields_there() -> None:
    with pytest.raises(UsageError) as e:
        render("{{.State.Nope}}", BOX)
    assert e.value.message == "template '{{.State.Nope}}': no field 'Nope'"
    assert e.value.hint == "the fields there: ExitCode, OomKilled, Pid, Running, Status"
    with pytest.raises(UsageError) as e:  # (a record with docker's keys and its own: once each)
        render("{{.Nope}}", {"created_at": 1, "CreatedAt": "x", "name": "v", "Name": "v"})
    assert e.value.hint == "the fields there: CreatedAt, Name"


@pytest.mark.parametrize(("template", "message"), [
    ("{{if 1}}" * 101 + "{{end}}" * 101, "the template nests more than 100 levels deep"),
    ("{{" + "(" * 101 + "1" + ")" * 101 + "}}", "the template nests more than 100 levels deep"),
    ("{{range 1000000}}xxxxxxxxxx{{end}}", "the template makes more than 4 MiB of text"),
    ("{{range 100000}}{{range 100000}}{{end}}{{end}}", "the template takes more than 1000000 steps"),
    ("{{range 1000000000}}{{end}}", "the template takes more than 1000000 steps"),
    ('{{$x := "ab"}}{{range 40}}{{$x = printf "%s%s" $x $x}}{{end}}', "printf makes more than 4 MiB of text"),
    ('{{printf "%900000s" (split "abcdef" "")}}', "the template makes more than 4 MiB of text"),
    ('{{$x := split (printf "%1000000s" "") ""}}{{print $x $x $x $x $x}}',
     "the template makes more than 4 MiB of text"),
    ("{{pad .Name 100000000 0}}", "pad: 100000000, 0: not a number of spaces"),
    # (few steps, each building megabytes: minutes of work before the budget of text)
    ('{{range $i := 300000}}{{$x := printf "%999999d" 1}}{{end}}done',
     "the template's functions build more than 64 MiB of text"),
    ('{{range $i := 1000}}{{$x := pad "x" 4000000 0}}{{end}}done',
     "the template's functions build more than 64 MiB of text"),
    ("{{" * 1000, "an action is not closed with }}"),
    ('{{"' + "x" * 1000, 'a quoted string is not closed with "'),
    ("{{end}}" * 1000, "{{end}} without {{if}}, {{with}} or {{range}}"),
])
def test_hostile_templates_stop_with_an_error(template: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        render(template, BOX)
    assert e.value.message == f"template {template!r}: {message}"


def test_what_is_just_within_the_bounds_still_works() -> None:
    assert render("{{if 1}}" * 100 + "x" + "{{end}}" * 100, BOX) == "x"
    assert render("{{" + "(" * 100 + "1" + ")" * 100 + "}}", BOX) == "1"
    assert render('{{printf "%1000000d" 1}}', BOX) == " " * 999999 + "1"
    assert render('{{printf "%1000001d" 1}}', BOX) == "%!(BADWIDTH)1"  # (Go's bound)
    assert render("{{if 0}}" + "{{else if 0}}" * 98 + "{{else}}z{{end}}", BOX) == "z"


@pytest.mark.parametrize(("template", "expected"), [
    ("{{.Names}}\\t{{.RunningFor}}", "NAMES\tRUNNING FOR"),
    ("{{json .Config}}\\t{{.}}", "CONFIG\t."),
    ("{{upper .Name}}\\t{{.Name | lower}}\\t{{printf \"%s:%d\" .Name .State.ExitCode}}", "NAME\tNAME\tNAME"),
    ("{{if .State.Running}}up{{else}}down{{end}}\\t{{range .Mounts}}{{.Source}} {{end}}", "RUNNING\tMOUNTS"),
    ("{{(index .Args 0)}}\\t{{(index $.Ports 0).HostPort}}", "ARGS\tHOST PORT"),
    ('{{$x := .Name}}{{$x}}\\t{{$x.Foo}}\\t{{"lit"}}\\t{{len $}}', '$X\tFOO\t"LIT"\tLEN $'),
    ("{{/* c */}}{{- .ID -}} \\t {{.OOMKilled}}", "IDOOMKILLED"),
])
def test_table_headers(template: str, expected: str) -> None:
    from boxlite_cli.cli.template import header

    assert header(template) == expected


def test_a_table_whose_rows_have_more_columns_than_its_header(
        capsys: pytest.CaptureFixture[str]) -> None:
    from boxlite_cli.cli.output import print_lines

    print_lines("table {{.Name}}\\t{{range .Args}}{{.}}\\t{{end}}", [BOX, {"name": "db", "args": []}])
    assert capsys.readouterr().out == ("NAME   ARGS\n"
                                       "web    sh     -c   echo hi\n"
                                       "db\n")


def test_json_writes_whole_floats_as_go_does() -> None:
    assert render("{{json 1.0}} {{json .F}} {{json .L}} {{json 1.5}}",
                  {"f": 1e6, "l": [2.0, {"x": -3.0}]}) == '1 1000000 [2,{"x":-3}] 1.5'
