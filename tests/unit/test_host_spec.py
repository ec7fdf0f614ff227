"""The box's main process from run options and the image config, by docker's rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from boxlite_cli.errors import ImageError, UsageError
from boxlite_cli.runtime.spec import (
    DEFAULT_PATH,
    MAX_LABELS_BYTES,
    ProcessOptions,
    box_labels,
    check_box_size,
    check_disk_size,
    host_memory_mib,
    merge_env,
    parse_cpus,
    parse_disk_size,
    parse_env_item,
    parse_memory_mib,
    parse_size,
    process_spec,
    read_env_file,
)

IMAGE: dict[str, Any] = {
    "Entrypoint": ["/entry.sh", "--flag"],
    "Cmd": ["serve", "--port", "80"],
    "Env": ["PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8", "FROM_IMAGE=image"],
    "WorkingDir": "/srv",
    "User": "app",
}
NO_HOST: dict[str, str] = {}


def spec(config: dict[str, Any] | None = None, host: dict[str, str] | None = None,
         **opts: Any) -> Any:
    return process_spec(ProcessOptions(**opts), IMAGE if config is None else config,
                        NO_HOST if host is None else host)


def env_dict(env: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in env)


# ENTRYPOINT and CMD ------------------------------------------------------------------------

@pytest.mark.parametrize(("config", "opts", "argv"), [
    # No overrides: ENTRYPOINT + CMD.
    (IMAGE, {}, ["/entry.sh", "--flag", "serve", "--port", "80"]),
    # A command replaces CMD, the ENTRYPOINT stays.
    (IMAGE, {"command": ["sh", "-c", "x"]}, ["/entry.sh", "--flag", "sh", "-c", "x"]),
    # --entrypoint replaces ENTRYPOINT and clears the image's CMD.
    (IMAGE, {"entrypoint": "/bin/bash"}, ["/bin/bash"]),
    (IMAGE, {"entrypoint": "/bin/bash", "command": ["-lc", "id"]}, ["/bin/bash", "-lc", "id"]),
    # --entrypoint "" drops the ENTRYPOINT; the command runs on its own.
    (IMAGE, {"entrypoint": "", "command": ["ls", "/"]}, ["ls", "/"]),
    # Only CMD in the image.
    ({"Cmd": ["bash"]}, {}, ["bash"]),
    ({"Cmd": ["bash"]}, {"command": ["true"]}, ["true"]),
    # Only ENTRYPOINT in the image.
    ({"Entrypoint": ["/init"]}, {}, ["/init"]),
    ({"Entrypoint": ["/init"]}, {"command": ["a", "b"]}, ["/init", "a", "b"]),
    # null values from a config.json.
    ({"Entrypoint": None, "Cmd": ["sh"]}, {}, ["sh"]),
    ({}, {"command": ["echo", ""]}, ["echo", ""]),
])
def test_entrypoint_and_cmd(config: dict[str, Any], opts: dict[str, Any], argv: list[str]) -> None:
    made = spec(config, **opts)
    assert made.argv == argv
    # (what of it is the entrypoint: docker's Config.Entrypoint and Config.Cmd)
    entry = ([opts["entrypoint"]] if opts.get("entrypoint") else []) if "entrypoint" in opts \
        else list(config.get("Entrypoint") or [])
    assert made.argv[:made.entrypoint_len] == entry


def test_image_config_is_not_mutated() -> None:
    config = {"Entrypoint": ["/e"], "Cmd": ["c"]}
    spec(config, command=["x"]).argv.append("mutated")
    assert config == {"Entrypoint": ["/e"], "Cmd": ["c"]}


@pytest.mark.parametrize(("config", "opts"), [
    ({}, {}),
    ({"Cmd": None, "Entrypoint": None}, {}),
    ({"Cmd": ["serve"]}, {"entrypoint": ""}),  # --entrypoint "" also clears CMD
    (IMAGE, {"entrypoint": ""}),
])
def test_no_command_is_a_usage_error(config: dict[str, Any], opts: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="no command specified") as info:
        spec(config, **opts)
    assert info.value.hint
    # (why: the image's lack, or the flag that cleared what it had)
    cleared = "--entrypoint '' cleared" in info.value.message
    assert cleared == (opts.get("entrypoint") == "")


def test_what_execve_could_not_take_is_refused_before_any_vm() -> None:
    """A 21 MB --env-file once reached the VM and failed there (and cost the template)."""
    with pytest.raises(UsageError, match=r"take .* bytes: Linux starts a process with at most"):
        spec({"Cmd": ["true"], "Env": [f"V{i}=" + "b" * 100 for i in range(30000)]})
    with pytest.raises(UsageError, match="per argument"):
        spec({"Cmd": ["echo", "x" * (128 << 10)]})
    with pytest.raises(UsageError, match="per environment variable"):
        spec({"Cmd": ["true"], "Env": ["BIG=" + "x" * (128 << 10)]})
    assert len(spec({"Cmd": ["echo", *["x" * 30] * 30000]}).argv) == 30001  # (~1 MB: fine)


# environment ----------------------------------------------------------------------------

def test_default_path_when_the_image_has_none() -> None:
    env = spec({"Cmd": ["sh"]}).env
    assert env == [f"PATH={DEFAULT_PATH}"]


def test_env_precedence_image_then_env_file_then_flags(tmp_path: Path) -> None:
    env_file = tmp_path / "vars"
    env_file.write_text("FROM_IMAGE=file\nFROM_FILE=file\nBOTH=file\n")
    env = env_dict(spec(env=["BOTH=flag", "FROM_FLAG=flag"], env_files=[str(env_file)]).env)
    assert env == {"PATH": "/opt/bin:/usr/bin", "LANG": "C.UTF-8", "FROM_IMAGE": "file",
                   "FROM_FILE": "file", "BOTH": "flag", "FROM_FLAG": "flag"}


def test_later_env_files_override_earlier_ones(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("X=a\nY=a\n")
    (tmp_path / "b").write_text("X=b\n")
    env = env_dict(spec({"Cmd": ["sh"]}, env_files=[str(tmp_path / "a"), str(tmp_path / "b")]).env)
    assert (env["X"], env["Y"]) == ("b", "a")


def test_flags_override_the_image_path() -> None:
    assert env_dict(spec(env=["PATH=/mine"]).env)["PATH"] == "/mine"


def test_bare_name_takes_the_host_value_or_is_dropped() -> None:
    host = {"HOST_SET": "from host", "EMPTY": ""}
    env = env_dict(spec(host=host, env=["HOST_SET", "HOST_UNSET", "EMPTY"]).env)
    assert env["HOST_SET"] == "from host"
    assert env["EMPTY"] == ""
    assert "HOST_UNSET" not in env


def test_bare_name_unset_on_host_keeps_the_image_value() -> None:
    env = env_dict(spec(env=["LANG"]).env)
    assert env["LANG"] == "C.UTF-8"


def test_values_keep_equals_signs_and_spaces() -> None:
    env = env_dict(spec(env=["A=b=c", "S= spaced out ", "E="]).env)
    assert (env["A"], env["S"], env["E"]) == ("b=c", " spaced out ", "")


@pytest.mark.parametrize("item", ["=value", "", "BAD NAME=x", "TAB\tNAME"])
def test_invalid_env_items(item: str) -> None:
    with pytest.raises(UsageError, match="invalid environment variable"):
        parse_env_item(item, NO_HOST)


def test_env_file_format(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text(
        "# a comment\n"
        "\n"
        "   \n"
        "PLAIN=1\n"
        "  INDENTED=2\n"
        "   # an indented comment\n"
        "QUOTED=\"not unquoted\"\n"
        "HASH=a#b\n"
        "FROM_HOST\n"
        "NOT_ON_HOST\n"
        "EMPTY=\n"
    )
    assert read_env_file(str(path), {"FROM_HOST": "h"}) == [
        "PLAIN=1", "INDENTED=2", 'QUOTED="not unquoted"', "HASH=a#b", "FROM_HOST=h", "EMPTY=",
    ]


def test_env_file_values_are_passed_through_untrimmed(tmp_path: Path) -> None:
    # docker: "pass the value through, no trimming".
    path = tmp_path / "env"
    path.write_text("TRAILING=value  \n")
    assert read_env_file(str(path), NO_HOST) == ["TRAILING=value  "]


def test_env_file_from_a_windows_editor(tmp_path: Path) -> None:
    """A BOM at the start and CRLF line ends (docker's reading); a form feed or a
    U+2028 in a value is the value's, not a line end."""
    path = tmp_path / "env"
    path.write_bytes("\ufeffBOM=1\r\nFF=a\x0cb\r\nLS=c\u2028d\n".encode())
    assert read_env_file(str(path), NO_HOST) == ["BOM=1", "FF=a\x0cb", "LS=c\u2028d"]


def test_env_file_with_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text("OK=1\n# a comment\n\nexport X=1\n")
    with pytest.raises(UsageError) as e:
        read_env_file(str(path), NO_HOST)
    assert e.value.message == (f"env file {path}, line 4: invalid environment variable: "
                               "'export X=1'")


def test_env_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_bytes(b"OK=1\nA=\xff\xfe\n")
    with pytest.raises(UsageError) as e:
        read_env_file(str(path), NO_HOST)
    assert e.value.message == f"env file {path}, line 2: not valid UTF-8 text"


BAD = b"\xff".decode(errors="surrogateescape")  # what Python makes of such an argument


@pytest.mark.parametrize(("opts", "says"), [
    ({"command": [f"a{BAD}"]}, "the command b'a\\xff' is not valid UTF-8 text"),
    ({"entrypoint": "", "command": ["printf", BAD]}, "argument 1 of the command b'\\xff' is not valid UTF-8"),
    ({"env": [f"A={BAD}"]}, "the environment variable b'A=\\xff' is not valid UTF-8"),
    ({"workdir": f"/tmp/{BAD}", "command": ["true"]}, "the working directory b'/tmp/\\xff'"),
    ({"user": BAD, "command": ["true"]}, "the user b'\\xff' is not valid UTF-8 text"),
])
def test_what_is_not_utf8_text_is_refused(opts: dict[str, Any], says: str) -> None:
    with pytest.raises(UsageError) as e:
        spec(**opts)
    assert says in e.value.message
    spec(command=["printf", "caf\u00e9 \u2603"], env=["A=\u00e9"])  # text is fine


def test_missing_env_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read env file"):
        spec(env_files=[str(tmp_path / "absent")])


def test_merge_env_keeps_first_seen_order() -> None:
    assert merge_env(["A=1", "B=2"], ["C=3", "A=9"]) == ["A=9", "B=2", "C=3"]


def test_tty_sets_term_unless_given() -> None:
    assert "TERM=xterm" in spec(tty=True).env
    assert "TERM=xterm" not in spec(tty=False).env
    env = spec(tty=True, env=["TERM=vt100"]).env
    assert [e for e in env if e.startswith("TERM=")] == ["TERM=vt100"]


# working directory and user ----------------------------------------------------------------

def test_workdir_and_user_from_image_or_flags() -> None:
    s = spec()
    assert (s.cwd, s.user) == ("/srv", "app")
    s = spec(workdir="/tmp", user="1000:1000")
    assert (s.cwd, s.user) == ("/tmp", "1000:1000")
    s = spec({"Cmd": ["sh"]})
    assert (s.cwd, s.user) == ("/", "")


def test_an_empty_workdir_or_user_is_no_override() -> None:
    """docker's: `-u "$MAYBE_USER"` with nothing in it keeps the image's USER (it ran as
    root here), and an empty -w its WORKDIR."""
    s = spec(workdir="", user="")
    assert (s.cwd, s.user) == ("/srv", "app")


@pytest.mark.parametrize("workdir", ["relative", "./x", "srv/app", "~"])
def test_relative_workdir_is_rejected(workdir: str) -> None:
    with pytest.raises(UsageError, match="absolute"):
        spec(workdir=workdir)


def test_options_are_carried_into_the_spec() -> None:
    s = spec(tty=True, interactive=True, rows=40, cols=120, timeout_s=2.5)
    assert (s.tty, s.stdin, s.rows, s.cols, s.timeout_s) == (True, True, 40, 120, 2.5)


# sizes ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("0", 0),
    ("1073741824", 1 << 30),
    ("1k", 1024),
    ("1K", 1024),
    ("512m", 512 << 20),
    ("512M", 512 << 20),
    ("512mb", 512 << 20),
    ("512MiB", 512 << 20),
    ("2g", 2 << 30),
    ("2G", 2 << 30),
    ("1.5g", 3 << 29),
    ("1.5GiB", 3 << 29),
    ("1t", 1 << 40),
    ("100b", 100),
    (" 64m ", 64 << 20),
])
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "m", "-1", "1x", "1.2.3g", "1e9", "one", "1 g b", "0x10"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="invalid memory size"):
        parse_size(text, "memory size")


@pytest.mark.parametrize(("text", "mib"), [
    ("128m", 128), ("512m", 512), ("2g", 2048), ("1.5g", 1536), (str(256 << 20), 256),
    ("134217728", 128), ("0", 512), ("0m", 512),  # (docker's -m 0, no limit: the default)
])
def test_parse_memory_mib(text: str, mib: int) -> None:
    assert parse_memory_mib(text) == mib


def test_a_memory_size_without_a_unit_too_small_is_asked_about() -> None:
    """`-m 512` is 512 bytes, as docker reads it: the hint names the likely meaning."""
    with pytest.raises(UsageError) as e:
        parse_memory_mib("512")
    assert e.value.message == "invalid memory size '512': a box needs at least 128 MiB"
    assert e.value.hint == "a size without a unit is bytes: did you mean 512m?"
    for small in ("64m", "100", "1"):  # (100m is as small: no hint to it, tester AT)
        with pytest.raises(UsageError) as e:
            parse_memory_mib(small)
        assert e.value.hint is None


@pytest.mark.parametrize(("text", "parsed"), [
    ("1", (1, 0.0)), ("2", (2, 0.0)), ("2.0", (2, 0.0)), (" 4 ", (4, 0.0)),
    ("1.5", (2, 1.5)), ("0.5", (1, 0.5)), (".25", (1, 0.25)), ("0.01", (1, 0.01)),
    ("3.3333", (4, 3.333)), ("0", (1, 0.0)), ("0.0", (1, 0.0)),  # (docker's 0: no limit)
])
def test_cpus_are_vcpus_rounded_up_and_a_limit_for_a_fraction(text: str,
                                                             parsed: tuple[int, float]) -> None:
    assert parse_cpus(text) == parsed


@pytest.mark.parametrize("text", ["-1", "0.009", "257", "1e2", "nan", "inf", "",
                                  "two", "1,5", "0x2"])
def test_bad_cpus_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match=r"invalid --cpus .*: a number of CPUs from 0.01 to 256"):
        parse_cpus(text)


@pytest.mark.parametrize("text", ["1k", "127m", "134217727", "6"])
def test_parse_memory_mib_needs_128_mib(text: str) -> None:
    with pytest.raises(UsageError, match="at least 128 MiB"):
        parse_memory_mib(text)


@pytest.mark.parametrize(("text", "size"), [
    (None, 0), ("20g", 20 << 30), ("20G", 20 << 30), ("1.5GiB", 1536 << 20),
    ("512g", 512 << 30), ("0.5t", 512 << 30), ("4096", 1 << 20), ("1m", 1 << 20), ("1.0001m", 2 << 20),
])
def test_parse_disk_size_rounds_up_to_a_mib(text: str | None, size: int) -> None:
    assert parse_disk_size(text) == size


@pytest.mark.parametrize(("text", "needle"), [
    ("0", "invalid disk size '0': give a size above 0"),
    ("513g", "give a size up to 512g"),
    ("-1g", "invalid disk size '-1g': use a number"),
    ("big", "invalid disk size 'big': use a number"),
])
def test_parse_disk_size_rejects(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_disk_size(text)


def test_a_disk_smaller_than_the_image_is_refused_with_what_would_do() -> None:
    check_disk_size(0, 5 << 30, "img")  # (not given)
    check_disk_size(5 << 30, 5 << 30, "img")
    with pytest.raises(UsageError) as e:
        check_disk_size(1 << 30, (4 << 30) + 1, "img")
    assert e.value.message == ("--disk-size 1024 MiB is smaller than the disk of img, 4096 MiB "
                               "(its content and 4 GiB free)")
    assert e.value.hint == "give at least that, e.g. --disk-size 5g"


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("Cmd", 42, "Cmd must be a list of strings"),
    ("Entrypoint", ["/init", 3], "Entrypoint must be a list of strings"),
    ("Env", "notalist", "Env must be a list of strings"),
    ("Env", ["A=1\0"], "Env must be a list of strings"),
    ("WorkingDir", ["/srv"], "WorkingDir must be a string"),
    ("User", 0, "User must be a string"),
])
def test_a_malformed_image_config_is_refused(field: str, value: Any, needle: str) -> None:
    """Not iterated character by character (a string Cmd ran "e"): one line, exit 125."""
    with pytest.raises(ImageError, match=f"invalid image config: {needle}"):
        spec({**IMAGE, field: value}, command=["true"] if field != "Cmd" else [])


MEMINFO = "MemTotal:       23456789 kB\nMemFree:         1234 kB\n"


def test_host_memory_is_read_from_meminfo() -> None:
    assert host_memory_mib(MEMINFO) == 23456789 // 1024
    assert host_memory_mib("MemFree: 1 kB\n") is None


@pytest.mark.parametrize(("cpus", "mib", "says"), [
    (3, 512, "invalid --cpus 3: this host has 2 CPUs"),
    (64, 512, "invalid --cpus 64: this host has 2 CPUs"),
    (1, 2048 * 1024, "invalid --memory: 2097152 MiB is more than this host's 4096 MiB"),
])
def test_a_box_larger_than_the_host_is_refused(cpus: int, mib: int, says: str) -> None:
    with pytest.raises(UsageError) as e:
        check_box_size(cpus, mib, cpus_here=2, memory_here_mib=4096)
    assert e.value.message == says
    check_box_size(2, 4096, cpus_here=2, memory_here_mib=4096)  # the whole host is fine
    check_box_size(1, 512, cpus_here=2, memory_here_mib=None)  # unknown: not refused


@pytest.mark.parametrize(("status", "says", "hint"), [
    ("DEADLINE_EXCEEDED", "the box's guest agent did not answer in time (its processes may "
     "be taking all of its CPU or memory)", "boxlite stop"),
    ("UNIMPLEMENTED", "the box's guest agent is older than this boxlite",
     "restart the box to give it the current one"),
])
def test_an_agent_error_is_named_with_the_fix(status: str, says: str, hint: str) -> None:
    import grpc

    from boxlite_cli.agent.client import agent_error

    class Failed(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return getattr(grpc.StatusCode, status)  # type: ignore[no-any-return]

        def details(self) -> str:
            return "from grpc"

    error = agent_error("starting the process", Failed())
    assert error.message == f"starting the process: {says}"
    assert error.hint is not None and hint in error.hint


def test_the_pids_limit_defaults_and_minus_one_is_none() -> None:
    from boxlite_cli.runtime.spec import pids_limit_of
    from boxlite_cli.state.records import DEFAULT_PIDS_LIMIT

    assert pids_limit_of(None) == DEFAULT_PIDS_LIMIT == 4096
    assert (pids_limit_of(-1), pids_limit_of(0), pids_limit_of(100)) == (0, 0, 100)
    with pytest.raises(UsageError, match="invalid --pids-limit -2"):
        pids_limit_of(-2)
    assert pids_limit_of(1 << 22) == 1 << 22  # (the kernel's most)
    with pytest.raises(UsageError, match="up to 4194304"):
        pids_limit_of((1 << 22) + 1)  # (the guest refused it, and cost the template)


@pytest.mark.parametrize(("text", "num"), [("RTMIN+3", 37), ("SIGRTMIN+3", 37), ("sigrtmax-2", 62),
                                         ("RTMIN", 34)])
def test_real_time_signals_by_name(text: str, num: int) -> None:
    from boxlite_cli.runtime.signals import parse_signal

    assert parse_signal(text) == num


def test_long_error_lines_are_cut_in_the_middle() -> None:
    from boxlite_cli.cli.errors import shortened

    assert shortened("abc") == "abc"
    long = "cannot copy to /" + "n" * 20000 + "/leaf: File name too long"
    cut = shortened(long)
    assert len(cut) < 1100 and cut.startswith("cannot copy to /n") and cut.endswith("too long")


def test_a_box_that_stopped_while_paused_is_not_shown_paused() -> None:
    from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status

    state = BoxState(id="x" * 64, name="n", status=Status.EXITED, paused=True,
                     config=BoxConfig(image="i", image_id="sha256:x", rootfs_base="",
                                      process=ProcessSpec(argv=["true"])))
    assert state.to_json()["paused"] is False
    state.status = Status.RUNNING
    assert state.to_json()["paused"] is True


def test_a_box_gets_the_images_labels_under_its_own() -> None:
    """docker's: the image's Labels are the container's, --label overrides them (a ps
    filter on an image label finds the box); malformed ones are left out."""
    config = {"Labels": {"org.image": "yes", "tier": "image", "bad": 1, "": "x"}}
    assert box_labels(config, {"tier": "db"}) == {"org.image": "yes", "tier": "db"}
    assert box_labels({"Labels": None}, {"a": "b"}) == {"a": "b"}
    big = {"Labels": {"huge": "x" * MAX_LABELS_BYTES, "small": "s"}}
    assert box_labels(big, {}) == {"small": "s"}  # (what fits the box's limit)


def test_a_string_cmd_or_entrypoint_is_a_list_of_one() -> None:
    """docker's StrSlice: `"Cmd": "serve"` is `["serve"]` (one word, not split)."""
    spec = process_spec(ProcessOptions(), {"Entrypoint": "/entry", "Cmd": "serve"})
    assert spec.argv == ["/entry", "serve"]
