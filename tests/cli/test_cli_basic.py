"""The `boxlite` command line without any VM: help, errors, empty listings, info, doctor."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_console_scripts import ScriptRunner

from boxlite_cli import __version__
from boxlite_cli.cli.app import COMMANDS
from tests.cli.helpers import assert_one_line_error, bx

# In-process runs keep this file fast; the tests marked `subprocess` check the real script.
pytestmark = pytest.mark.script_launch_mode("inprocess")
subprocess_mode = pytest.mark.script_launch_mode("subprocess")


def box_dirs(home: Path) -> list[Path]:
    boxes = home / "boxes"
    return sorted(boxes.iterdir()) if boxes.exists() else []


# help and version -----------------------------------------------------------------------

def test_top_level_help_lists_every_command(script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: boxlite")
    for name in COMMANDS:
        assert f"  {name}" in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(script_runner: ScriptRunner, command: str, home: Path) -> None:
    result = bx(script_runner, command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: boxlite {command}")
    assert result.stderr == ""
    assert box_dirs(home) == []


# click caches a command's help option per process: -h is checked in a fresh one.
@subprocess_mode
@pytest.mark.parametrize("command", ["ps", "exec"])
def test_short_help_flag(script_runner: ScriptRunner, command: str) -> None:
    result = bx(script_runner, command, "-h")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: boxlite {command}")


@subprocess_mode
@pytest.mark.parametrize("command", ["run", "create"])
def test_h_is_the_hostname_of_run_and_create_as_in_docker(script_runner: ScriptRunner,
                                                          command: str, home: Path) -> None:
    """(A script's `id=$(boxlite create -h web IMAGE)` got the help text before.)"""
    result = bx(script_runner, command, "-h")
    assert_one_line_error(result, "Option '-h' requires an argument")
    assert result.stdout == ""
    assert bx(script_runner, command, "--help").stdout.startswith(f"Usage: boxlite {command}")


@pytest.mark.parametrize("flag", ["--version", "-v"])  # (-v: docker's too)
def test_version(script_runner: ScriptRunner, flag: str) -> None:
    result = bx(script_runner, flag)
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_no_arguments_shows_usage(script_runner: ScriptRunner) -> None:
    result = bx(script_runner)
    assert result.returncode in (0, 2, 125)
    assert "Usage: boxlite" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


# usage errors ----------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "needle", "hint"), [
    (["run", "--bogus", "debian"], "--bogus", "boxlite run --help"),
    (["ps", "--no-such-flag"], "--no-such-flag", "boxlite ps --help"),
    (["--bogus", "ps"], "--bogus", "boxlite --help"),
    (["rm"], "BOXES", "boxlite rm --help"),
    (["run"], "IMAGE", "boxlite run --help"),
    (["ps", "--format", "yaml"], "yaml", "boxlite ps --help"),
    (["run", "--cpus", "-1", "debian"], "--cpus", "--cpus 1.5: two vCPUs limited"),
    (["run", "--accel", "hvf", "debian"], "hvf", "boxlite run --help"),
    (["stop", "-t", "-2", "x"], "'-2' is not a number of seconds from 0 to 1000000000, or "
     "-1 (for ever)", "boxlite stop --help"),
    (["stop", "-t", "-0.5", "x"], "'-0.5' is not a number of seconds", "boxlite stop --help"),
    (["stop", "-t", "nan", "x"], "'nan' is not a number of seconds", "boxlite stop --help"),
    (["run", "--timeout", "nan", "debian", "true"], "'nan' is not a number of seconds",
     "boxlite run --help"),
    (["create", "--stop-timeout", "1e10", "debian"], "'1e10' is not a number of seconds",
     "boxlite create --help"),
    (["exec", "--timeout", "-1", "x", "true"], "'-1' is not a number of seconds from 0 to "
     "1000000000", "boxlite exec --help"),
    (["ps", "--last", "abc"], "'abc' is not a whole number", "boxlite ps --help"),
    (["clone", "-n", "0", "x"], "'0' is less than 1", "boxlite clone --help"),
    (["run", "--timeout", "1e10", "debian"], "--timeout", "boxlite run --help"),
    # (an option with no value: click gives no context; the group names the command's)
    (["run", "--pull"], "'--pull' requires an argument", "boxlite run --help"),
    (["volume", "ls", "--format"], "requires an argument", "boxlite volume ls --help"),
    (["snapshot", "ls"], "BOX", "boxlite snapshot ls --help"),
    # (click's list of choices on lines of their own: one line here)
    (["completion"], "Choose from: bash, zsh, fish", "boxlite completion --help"),
])
def test_usage_errors_are_one_line_with_a_hint(script_runner: ScriptRunner, args: list[str],
                                               needle: str, hint: str) -> None:
    result = bx(script_runner, *args)
    assert_one_line_error(result, needle)
    assert hint in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("args", "needle"), [
    (["start", "--cold", "--checkpoint", "ck", "web"], "--cold and --checkpoint exclude"),
    (["run", "--from", "web:ck", "--cpus", "2"], "--from cannot be combined with --cpus"),
    (["run", "--from", "web:ck", "-v", "/tmp:/x", "--cold"],
     "--from cannot be combined with --volume, --cold"),
    (["attach", "--detach-keys", "ctrl-1", "web"], "invalid detach key 'ctrl-1'"),
    (["exec", "--detach-keys", "ctrl-1", "web", "sh"], "invalid detach key 'ctrl-1'"),
    (["run", "--ulimit", "nofile=5:3", "debian"],
     "invalid --ulimit 'nofile=5:3': the soft limit is above the hard one"),
    (["create", "--shm-size", "lots", "debian"], "invalid --shm-size 'lots'"),
    (["inspect"], "inspect needs at least one BOX or IMAGE (or -l)"),
    (["run", "--cap-drop", "NET_FOO", "debian", "true"],
     "invalid --cap-drop 'NET_FOO': no such capability"),
    (["create", "--cap-add", "cap_", "debian"], "invalid --cap-add 'cap_': no such capability"),
    (["inspect", "-l"], "there is no box"),
    (["inspect", "-l", "web"], "inspect takes BOX or -l, not both"),
])
def test_options_that_exclude_each_other(script_runner: ScriptRunner, args: list[str],
                                         needle: str, home: Path) -> None:
    """Refused in one line before any box is looked at (there is none)."""
    result = bx(script_runner, *args)
    assert_one_line_error(result, needle)
    assert box_dirs(home) == []


def test_unknown_command(script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "frobnicate")
    assert_one_line_error(result, "frobnicate")


def test_run_of_an_image_not_in_the_store(script_runner: ScriptRunner, home: Path) -> None:
    result = bx(script_runner, "run", "--pull", "never", "--name", "web", "nosuchimage:1.0", "true")
    assert_one_line_error(result, "nosuchimage:1.0", "--pull never")
    assert result.stdout == ""
    ps = bx(script_runner, "ps", "-a", "--format", "json")
    assert ps.returncode == 0 and json.loads(ps.stdout) == []
    assert box_dirs(home) == []
    names = home / "names"
    assert not names.exists() or list(names.iterdir()) == []


def test_create_of_an_image_not_in_the_store(script_runner: ScriptRunner, home: Path) -> None:
    result = bx(script_runner, "create", "--pull", "never", "nosuchimage")
    assert_one_line_error(result, "nosuchimage")
    assert box_dirs(home) == []


def test_run_of_an_image_whose_registry_is_down(script_runner: ScriptRunner, home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_REGISTRY_RETRIES", "0")
    result = bx(script_runner, "run", "--name", "web", "127.0.0.1:1/nosuchimage", "true")
    assert_one_line_error(result, "127.0.0.1:1", "cannot connect")
    assert box_dirs(home) == []
    assert json.loads(bx(script_runner, "images", "--format", "json").stdout) == []


@pytest.mark.parametrize("debug", [["--debug"], []])
def test_debug_shows_the_traceback(script_runner: ScriptRunner, debug: list[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if not debug:
        monkeypatch.setenv("BOXLITE_DEBUG", "1")
    result = bx(script_runner, *debug, "run", "--pull", "never", "nosuchimage")
    assert result.returncode == 125
    assert "Traceback (most recent call last)" in result.stderr
    assert "ImageError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-2].startswith("boxlite: ")


def test_invalid_reference_is_a_usage_error(script_runner: ScriptRunner, home: Path) -> None:
    result = bx(script_runner, "run", "Not/Valid:ref", "true")
    assert_one_line_error(result, "invalid reference format")
    assert box_dirs(home) == []


@pytest.mark.parametrize("memory", ["1k", "127m", "lots", "-5g"])
def test_run_with_too_little_or_bad_memory(script_runner: ScriptRunner, memory: str,
                                           home: Path) -> None:
    result = bx(script_runner, "run", "--memory", memory, "debian", "true")
    assert_one_line_error(result, "memory")
    assert box_dirs(home) == []


def test_bad_accel_from_the_environment(script_runner: ScriptRunner,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_ACCEL", "warp")
    result = bx(script_runner, "run", "debian", "true")
    assert_one_line_error(result, "warp")


# empty home ---------------------------------------------------------------------------

@pytest.mark.parametrize("all_flag", [["-a"], []])
def test_ps_json_on_an_empty_home(script_runner: ScriptRunner, all_flag: list[str]) -> None:
    result = bx(script_runner, "ps", *all_flag, "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == []
    assert result.stderr == ""


def test_ps_quiet_on_an_empty_home(script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "ps", "-a", "-q")
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == ""


def test_ps_table_on_an_empty_home_is_just_the_header(script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "ps", "-a")
    assert result.returncode == 0
    assert result.stdout.split() == ["BOX", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                     "PORTS", "NAMES"]


@pytest.mark.parametrize("listing", [["ps", "-a"], ["images"], ["volume", "ls"], ["diff", "x"],
                                     ["inspect", "x"], ["volume", "inspect", "x"]])
def test_an_empty_format_is_the_table(script_runner: ScriptRunner, listing: list[str]) -> None:
    """docker's: `--format "$FMT"` with FMT unset (a Makefile's) is the default table."""
    plain = bx(script_runner, *listing)
    empty = bx(script_runner, *listing, "--format", "")
    assert (empty.returncode, empty.stdout, empty.stderr) == (
        plain.returncode, plain.stdout, plain.stderr)
    assert "Invalid value" not in empty.stderr


def test_an_empty_format_of_inspect_is_its_json(script_runner: ScriptRunner) -> None:
    assert bx(script_runner, "volume", "create", "shown").returncode == 0
    plain = bx(script_runner, "volume", "inspect", "shown")
    empty = bx(script_runner, "volume", "inspect", "--format", "", "shown")
    assert empty.stdout == plain.stdout and json.loads(empty.stdout)[0]["Name"] == "shown"


def test_images_on_an_empty_home(script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "images", "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == []
    assert bx(script_runner, "images", "-q").stdout == ""


@pytest.mark.parametrize("command", ["rm", "stop", "start", "logs", "top", "diff"])
def test_unknown_box(script_runner: ScriptRunner, command: str) -> None:
    result = bx(script_runner, command, "nosuchbox")
    assert_one_line_error(result, "no such box", "nosuchbox")


def test_top_takes_no_ps_options(script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "top", "somebox", "aux")
    assert_one_line_error(result, "boxlite top takes no ps options (aux)")
    assert "--format json" in result.stderr


def test_rm_of_several_reports_each_unknown_box(script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "rm", "ghost1", "ghost2")
    assert result.returncode == 125
    assert [line for line in result.stderr.splitlines() if "no such box" in line] == [
        "boxlite: no such box: ghost1", "boxlite: no such box: ghost2"]


def test_rm_force_takes_a_missing_box_as_removed(script_runner: ScriptRunner) -> None:
    # as docker's (since docker/cli#7110) and podman's: `rm -f` of a box that is not
    # there is no failure, and not a word
    result = bx(script_runner, "rm", "-f", "ghost1", "ghost2")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_exec_in_unknown_box(script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "exec", "nosuchbox", "true")
    assert_one_line_error(result, "no such box")


# info and doctor ----------------------------------------------------------------------

def test_info_json(script_runner: ScriptRunner, home: Path) -> None:
    result = bx(script_runner, "info", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"] == __version__
    assert data["home"]["data"] == str(home)
    assert data["boxes"] == {"total": 0, "running": 0, "exited": 0}
    assert data["images"] == 0
    assert data["spares"] == {"ready": 0, "total": 0}
    assert "not built" in data["payload"]["error"]
    dead = home / "spares" / "abc123"  # (what a killed spare left: not a spare)
    dead.mkdir(parents=True)
    (dead / "spare.json").write_text('{"key": "k"}')
    (dead / "shim.pid").write_text('{"pid": 999999999, "start_time": 1}')
    spares = json.loads(bx(script_runner, "info", "--format", "json").stdout)["spares"]
    assert spares == {"ready": 0, "total": 0}


def test_info_table(script_runner: ScriptRunner, home: Path) -> None:
    result = bx(script_runner, "info")
    assert result.returncode == 0, result.stderr
    assert f"version: {__version__}" in result.stdout
    assert str(home) in result.stdout
    assert "ncpu" not in result.stdout  # (docker's fields: for templates and json)


def test_info_has_the_fields_docker_scripts_read(script_runner: ScriptRunner) -> None:
    shown = bx(script_runner, "info", "-f", "{{.ServerVersion}} {{.NCPU}} {{.OSType}} "
               "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.MemTotal}}")
    assert shown.returncode == 0, shown.stderr
    version, ncpu, os_type, *counts, memory = shown.stdout.split()
    assert (version, int(ncpu), os_type, counts) == (
        __version__, os.cpu_count(), "linux", ["0", "0", "0"])
    assert int(memory) > 0
    assert bx(script_runner, "version", "-f", "{{.Client.Version}}").stdout == f"{__version__}\n"


def test_a_listing_whose_reader_goes_away_exits_141_quietly(home: Path) -> None:
    """`boxlite images | head -1` under pipefail: a host tool's status (SIGPIPE), no
    message; it was a silent 1 now and then."""
    boxlite = str(Path(sys.executable).with_name("boxlite"))
    read, write = os.pipe()
    os.close(read)  # (the reader is gone before anything is written)
    try:
        done = subprocess.run([boxlite, "images"], stdout=write, stderr=subprocess.PIPE,
                              timeout=60, env=dict(os.environ, BOXLITE_PRESTART="0"))
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, b"")


def test_debug_is_boxlites_only_before_the_command(script_runner: ScriptRunner) -> None:
    refused = bx(script_runner, "rm", "--debug", "nosuch")
    assert_one_line_error(refused, "No such option: --debug")  # (no traceback)
    # before it: a traceback, for commands of several boxes too
    traced = bx(script_runner, "--debug", "rm", "nosuch")
    assert traced.returncode == 125
    assert "Traceback" in traced.stderr and "boxlite: no such box: nosuch" in traced.stderr


def test_version_names_boxlite_qemu_and_the_guest(script_runner: ScriptRunner, home: Path) -> None:
    data = json.loads(bx(script_runner, "version", "--format", "json").stdout)
    assert (data["version"], data["os_arch"]) == (__version__, "linux/amd64")
    assert "not built" in data["guest"]["error"]  # (this home's payload: said, not fatal)
    templated = bx(script_runner, "version", "--format", "{{.Client.Version}} {{.Server.Os}}")
    assert templated.stdout == f"{__version__} linux\n"  # (docker's idioms)
    assert bx(script_runner, "info", "--format", "{{.Version}} {{.Boxes.Total}}"
              ).stdout == f"{__version__} 0\n"
    assert bx(script_runner, "volume", "create", "vol1").returncode == 0
    assert bx(script_runner, "volume", "ls", "--format", "{{.Name}} {{.Driver}}"
              ).stdout == "vol1 local\n"
    as_docker = json.loads(bx(script_runner, "volume", "ls", "--format", "{{json .}}").stdout)
    assert sorted(as_docker) == ["Availability", "Driver", "Group", "Labels", "Links",
                                 "Mountpoint", "Name", "Scope", "Size", "Status"]
    assert as_docker["Name"] == "vol1"  # (docker's keys alone, its Labels a text)
    assert bx(script_runner, "system", "df", "--format", "{{.Type}}").stdout.splitlines() == [
        "Images", "Boxes", "Local Volumes", "Warm-start Templates"]
    table = bx(script_runner, "version")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0] == f"boxlite:      {__version__}"


def test_doctor_reports_the_missing_payload(script_runner: ScriptRunner, home: Path) -> None:
    result = bx(script_runner, "doctor", "--format", "json")
    assert result.returncode == 1  # something boxlite needs is missing
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    payload = checks["guest payload"]
    assert payload["ok"] is False
    # (the tests' $BOXLITE_PAYLOAD names none: the fix is about it, not a build)
    assert payload["fix"].startswith("$BOXLITE_PAYLOAD names no built payload: unset it")
    assert str(home / "no-such-payload") in payload["detail"]
    assert {"qemu", "qemu-img", "mkfs.ext4"} <= set(checks)
    for tool in ("qemu", "qemu-img", "mkfs.ext4"):  # versions, not a complaint about a flag
        assert "version" in checks[tool]["detail"] or checks[tool]["detail"][:6] == "mke2fs", \
            checks[tool]
        assert "invalid option" not in checks[tool]["detail"]
    for check in checks.values():
        assert set(check) >= {"name", "ok", "detail", "fix", "required"}
        assert check["ok"] or check["fix"], f"{check['name']} fails without saying how to fix it"


def test_doctor_table_names_the_fix(script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "doctor")
    assert result.returncode == 1
    assert "guest payload" in result.stdout
    assert "fix: $BOXLITE_PAYLOAD names no built payload" in result.stdout


def test_doctor_checks_the_home_and_its_config_file(script_runner: ScriptRunner,
                                                   home: Path) -> None:
    """What every command needs first: a usable home, a config.toml boxlite can read."""
    config = home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text('insecure-registries = ["lan:5000"]\n')
    checks = {c["name"]: c for c in json.loads(bx(script_runner, "doctor", "--format",
                                                   "json").stdout)}
    assert checks["home"]["ok"] is False
    assert checks["home"]["detail"] == (f"{config}/config.toml: unknown setting "
                                        "'insecure-registries'")
    assert checks["home"]["fix"] == "did you mean insecure_registries?"
    (config / "config.toml").unlink()
    checks = {c["name"]: c for c in json.loads(bx(script_runner, "doctor", "--format",
                                                   "json").stdout)}
    assert checks["home"]["ok"] is True


def test_doctor_does_not_probe_or_write_outside_the_home(script_runner: ScriptRunner,
                                                         home: Path) -> None:
    bx(script_runner, "doctor", "--format", "json")
    assert box_dirs(home) == []


# the real console script -------------------------------------------------------------

@subprocess_mode
def test_real_script_unknown_flag(script_runner: ScriptRunner) -> None:
    assert_one_line_error(bx(script_runner, "run", "--bogus", "debian"), "--bogus")


@subprocess_mode
def test_real_script_missing_image_and_debug(script_runner: ScriptRunner, home: Path) -> None:
    assert_one_line_error(bx(script_runner, "run", "--pull=never", "nosuchimage", "true"), "nosuchimage")
    result = bx(script_runner, "--debug", "run", "--pull=never", "nosuchimage", "true")
    assert result.returncode == 125
    assert "Traceback (most recent call last)" in result.stderr
    assert box_dirs(home) == []


@subprocess_mode
def test_real_script_ps_json(script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "ps", "-a", "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == []


# Ctrl-C ---------------------------------------------------------------------------------

def test_ctrl_c_while_the_cli_starts_is_quiet(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 130 and no traceback, whether the interrupt lands in the console script's
    first steps or in the import of the commands."""
    import sys
    import types

    from boxlite_cli import entry
    from boxlite_cli.cli import main

    def interrupted(_: object) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(entry, "wants_prestart", interrupted)
    assert entry.main() == 130

    class Interrupting(types.ModuleType):
        def __getattr__(self, name: str) -> object:
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "boxlite_cli.cli.app", Interrupting("boxlite_cli.cli.app"))
    assert main(["ps"]) == 130
    assert capsys.readouterr().err == ""


# closed standard streams ------------------------------------------------------------------


def _closed(fd: int, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The real script with `fd` closed (`>&-`, `2>&-`), its stderr to a pipe unless
    that is the closed one (then stdout is)."""
    boxlite = shutil.which("boxlite", path=str(Path(sys.executable).parent))
    assert boxlite is not None
    return subprocess.run([boxlite, *args], capture_output=True, check=False, timeout=60,
                          preexec_fn=lambda: os.close(fd))


def test_a_closed_stdout_is_no_crash(home: Path) -> None:
    proc = _closed(1, "ps")
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr


def test_a_closed_stderr_keeps_the_exit_code(home: Path) -> None:
    proc = _closed(2, "rm", "nosuch")
    assert proc.returncode == 125 and proc.stdout == b"", proc.stdout


def test_an_error_line_stderr_cannot_take_keeps_the_exit_code(home: Path) -> None:
    boxlite = shutil.which("boxlite", path=str(Path(sys.executable).parent))
    assert boxlite is not None
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([boxlite, "rm", "nosuch"], stdout=subprocess.PIPE, stderr=full,
                              check=False, timeout=60)
    assert proc.returncode == 125


@pytest.mark.parametrize("args", [["version"], ["ps"], ["ps", "--format", "json"]])
def test_a_stdout_that_cannot_be_written_is_said_as_such(home: Path, args: list[str]) -> None:
    """`> /dev/full`: the one line names standard output (it said "No space left on
    device", with a hint to free disk space: the disk was fine)."""
    boxlite = shutil.which("boxlite", path=str(Path(sys.executable).parent))
    assert boxlite is not None
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([boxlite, *args], stdout=full, stderr=subprocess.PIPE,
                              check=False, timeout=60)
    assert (proc.returncode, proc.stderr.decode()) == (
        125, "boxlite: cannot write to standard output: No space left on device\n")


def test_a_home_that_cannot_be_one_says_which_and_why(script_runner: ScriptRunner,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("BOXLITE_HOME", str(tmp_path / "a-file"))
    result = bx(script_runner, "ps")
    assert_one_line_error(result, f"cannot use {tmp_path / 'a-file'} for boxlite "
                                  "($BOXLITE_HOME): it, or a directory above it, is a file")


def test_export_onto_a_directory_says_so_before_asking_for_force(
        script_runner: ScriptRunner, tmp_path: Path) -> None:
    """(--force cannot replace a directory: it is no help to suggest it.)"""
    for force in ([], ["--force"]):
        result = bx(script_runner, "export", "anybox", "-o", str(tmp_path), *force)
        assert_one_line_error(result, f"{tmp_path} is a directory")
        assert "name the archive file to write" in result.stderr
    assert tmp_path.is_dir()


def test_a_sigterm_ends_import_as_ctrl_c_does_leaving_nothing_staged(
        script_runner: ScriptRunner, home: Path) -> None:
    """`timeout` or CI's TERM to an import (export, clone and snapshot create are wired
    the same: cli/errors.py ending_on_signals) runs its clean-up: exit 143, no staging."""
    import signal
    import time

    staging = home / "staging"
    proc = subprocess.Popen(["boxlite", "import", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (staging.is_dir() and any(staging.iterdir())):  # (reading the archive)
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert (proc.returncode, out) == (128 + signal.SIGTERM, b""), err
    assert list(staging.iterdir()) == []
    assert bx(script_runner, "ps", "-aq").stdout == ""


def test_export_writes_to_standard_output_without_o(script_runner: ScriptRunner) -> None:
    """docker's `export BOX > FILE`: no -o is standard output, not a missing option."""
    result = bx(script_runner, "export", "nosuch")
    assert_one_line_error(result, "no such box: nosuch")
    assert result.stdout == ""


def test_run_and_create_quiet_show_no_pull_progress(script_runner: ScriptRunner,
                                                    home: Path) -> None:
    from boxlite_cli.cli.context import CliContext
    from boxlite_cli.cli.progress import pull_display
    from boxlite_cli.runtime.runtime import _quiet_pull

    assert CliContext(quiet_pull=True).runtime.pull_display is _quiet_pull
    assert CliContext().runtime.pull_display is pull_display
    result = bx(script_runner, "create", "-q", "--pull", "never", "nosuch/image")
    assert_one_line_error(result, "nosuch/image")  # (-q taken; the image is not there)


def test_an_unknown_option_names_the_near_ones_in_one_sentence(
        script_runner: ScriptRunner) -> None:
    result = bx(script_runner, "run", "--log-optx", "v", "img")
    assert_one_line_error(result)
    assert result.stderr.splitlines()[0] == (
        "boxlite: No such option: --log-optx (did you mean --dns-opt or --log-opt?)")


@pytest.mark.parametrize(("args", "says"), [
    (["run", "--memory-swap", "1g", "img"],
     "boxlite run does not take docker's --memory-swap: -m is the RAM of the box's VM"),
    (["create", "--device", "/dev/null", "img"],
     "boxlite create does not take docker's --device: a box is a VM"),
    (["run", "--pid", "host", "img"], "boxlite run does not take docker's --pid: a box is a VM"),
    (["update", "--cpu-shares", "512", "web"],
     "boxlite update does not take docker's --cpu-shares: use --cpus"),
    (["stats", "-a"], "boxlite stats does not take docker's -a: stats lists the running"),
    (["system", "df", "-v"], "boxlite system df does not take docker's -v: use boxlite ps"),
])
def test_a_docker_flag_boxlite_does_not_take_says_why(script_runner: ScriptRunner,
                                                      args: list[str], says: str) -> None:
    """Not click's nearest names (--memory-swap "did you mean --memory?", which is not
    docker's -m here: tester AU)."""
    result = bx(script_runner, *args)
    assert_one_line_error(result, says)
    assert "did you mean" not in result.stderr


def test_the_detach_keys_are_said_as_dockers_and_are_no_error_even_with_debug(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Detached (the keys typed): docker's line and 0; with --debug, no traceback."""
    from boxlite_cli.cli.errors import exit_code_for
    from boxlite_cli.errors import Detached

    for debug in (False, True):
        assert exit_code_for(Detached(), debug) == 0
        assert capsys.readouterr().err == "read escape sequence\n"


def test_a_full_disk_no_file_was_named_for_says_where_boxlites_data_is(
        capsys: pytest.CaptureFixture[str], home: Path) -> None:
    """A write's ENOSPC names no file: the line says so, the hint where to look."""
    import errno

    from boxlite_cli.cli.errors import exit_code_for

    assert exit_code_for(OSError(errno.ENOSPC, "No space left on device"), False) == 125
    assert capsys.readouterr().err == (
        "boxlite: No space left on device\n  hint: free some disk space and try again "
        f"(boxlite keeps its data under {home}: `boxlite system df` shows what it takes, "
        "`boxlite system prune` frees what is unused)\n")


def test_logout_says_when_dockers_login_still_gives_credentials(
        script_runner: ScriptRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(`logout` said "Not logged in" while pulls went on using docker's login)"""
    docker = tmp_path / "docker"
    docker.mkdir()
    token = base64.b64encode(b"alice:s3cret").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {"reg.lan:5000": {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    out = bx(script_runner, "logout", "reg.lan:5000")
    assert (out.returncode, out.stdout) == (0, "Not logged in to reg.lan:5000\n")
    assert out.stderr == ("boxlite: warning: docker's login to reg.lan:5000 (its config.json, "
                          "or a credential helper it names) still gives credentials, which "
                          "pulls and pushes use; to stop that: docker logout reg.lan:5000\n")
    quiet = bx(script_runner, "logout", "other.lan")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "Not logged in to other.lan\n", "")


@pytest.mark.parametrize("server", ["bad host!", "reg.lan:port", "[::zz]:5000", "http://",
                                    "https:///v2/"])
def test_login_to_a_server_that_is_no_registry_name_is_refused_at_once(
        script_runner: ScriptRunner, server: str) -> None:
    """(it was looked up in the DNS 4 times, then "cannot connect")"""
    result = script_runner.run(["boxlite", "login", "-u", "u", "--password-stdin", server],
                               stdin=io.StringIO("pw\n"), print_result=False)
    assert_one_line_error(result, f"invalid registry {server!r}: give HOST[:PORT]")
    assert_one_line_error(bx(script_runner, "logout", server), f"invalid registry {server!r}")
