"""cp and volume commands without a VM: argument errors and the volume store."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_console_scripts import ScriptRunner

from tests.cli.helpers import assert_one_line_error, bx


def test_cp_argument_errors(script_runner: ScriptRunner, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert_one_line_error(bx(script_runner, "cp", "a:/x", "b:/y"), "between boxes")
    assert_one_line_error(bx(script_runner, "cp", str(tmp_path / "f"), str(tmp_path / "g")),
                          "BOX:PATH")
    assert_one_line_error(bx(script_runner, "cp", str(tmp_path / "f"), "nobox:/tmp"), "nobox")
    assert_one_line_error(bx(script_runner, "cp", "nobox:/x", str(tmp_path / "no" / "dir")),
                          "does not exist")


def test_volume_lifecycle(script_runner: ScriptRunner) -> None:
    made = bx(script_runner, "volume", "create", "data")
    assert made.returncode == 0 and made.stdout == "data\n"
    listed = json.loads(bx(script_runner, "volume", "ls", "--format", "json").stdout)
    assert [v["name"] for v in listed] == ["data"]
    assert Path(listed[0]["mountpoint"]).is_dir()
    assert bx(script_runner, "volume", "ls", "-q").stdout == "data\n"
    assert "data" in bx(script_runner, "volume", "ls").stdout
    inspected = json.loads(bx(script_runner, "volume", "inspect", "data").stdout)
    assert inspected[0]["mountpoint"] == listed[0]["mountpoint"]
    # docker's keys and idioms: volume inspect -f, volume ls -f
    assert (inspected[0]["Name"], inspected[0]["Mountpoint"]) == ("data", listed[0]["mountpoint"])
    assert bx(script_runner, "volume", "inspect", "-f", "{{.Mountpoint}} {{.Driver}}", "data"
              ).stdout == f"{listed[0]['mountpoint']} local\n"
    assert bx(script_runner, "volume", "create", "other").returncode == 0
    for filters, names in ((["dangling=true"], "data\nother\n"), (["dangling=false"], ""),
                           (["name=oth"], "other\n"), (["name=x", "name=dat"], "data\n")):
        args = [arg for f in filters for arg in ("-f", f)]
        assert bx(script_runner, "volume", "ls", "-q", *args).stdout == names, filters
    assert_one_line_error(bx(script_runner, "volume", "ls", "-f", "driver=local"),
                          "invalid filter 'driver'")
    assert bx(script_runner, "volume", "rm", "other").returncode == 0
    assert bx(script_runner, "volume", "rm", "data").returncode == 0
    assert bx(script_runner, "volume", "ls", "-q").stdout == ""
    assert_one_line_error(bx(script_runner, "volume", "rm", "data"), "no such volume")
    gone = bx(script_runner, "volume", "rm", "-f", "data")  # (docker's clean-up idiom)
    assert (gone.returncode, gone.stdout, gone.stderr) == (0, "", "")
    assert_one_line_error(bx(script_runner, "volume", "create", "bad/name"), "invalid volume name")
    assert_one_line_error(bx(script_runner, "volume", "create", "vol\n"), "invalid volume name")


def test_run_bad_volume_specs(script_runner: ScriptRunner) -> None:
    for spec, needle in [("rel/x:/x", "absolute host path"),
                         ("/tmp:/x:rx", "unknown option"), ("/tmp:x", "not absolute")]:
        assert_one_line_error(bx(script_runner, "create", "-v", spec, "localhost/debian:bookworm"),
                              needle)
    assert bx(script_runner, "ps", "-a", "-q").stdout == ""
    assert bx(script_runner, "volume", "ls", "-q").stdout == ""
