"""image history: an image's config history, newest first, with its layers' sizes."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_console_scripts import ScriptRunner

from boxlite_cli.cli.history import history_rows
from boxlite_cli.oci.reference import parse_reference
from boxlite_cli.oci.store import Image
from tests.cli.helpers import assert_one_line_error, bx


def image(config: dict[str, object], sizes: list[int]) -> Image:
    manifest = {"layers": [{"digest": "sha256:" + str(n) * 64, "size": s}
                           for n, s in enumerate(sizes)]}
    return Image(parse_reference("app:1"), "sha256:" + "f" * 64, manifest, config)


def test_each_step_has_the_size_of_the_layer_it_made_newest_first() -> None:
    steps = [{"created": "2026-01-01T00:00:00Z", "created_by": "ADD rootfs"},
             {"created_by": "ENV A=1", "empty_layer": True},
             {"created_by": "boxlite commit", "comment": "deps"}]
    rows = history_rows(image({"history": steps}, [1000, 20]), [1000, 20])
    assert [(r["created_by"], r["size"], r["comment"]) for r in rows] == [
        ("boxlite commit", 20, "deps"), ("ENV A=1", 0, ""), ("ADD rootfs", 1000, "")]


def test_an_image_without_history_has_a_row_a_layer() -> None:
    rows = history_rows(image({}, [5, 6]), [5, 6])
    assert [r["size"] for r in rows] == [6, 5] and rows[0]["created_by"] == ""


def test_cli_history(script_runner: ScriptRunner, home: Path, tmp_path: Path) -> None:
    from tests.cli.test_cli_state import plant_image

    ref = plant_image(tmp_path)
    shown = bx(script_runner, "history", ref)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].split() == ["IMAGE", "CREATED", "CREATED", "BY",
                                                    "SIZE", "COMMENT"]
    listed = json.loads(bx(script_runner, "image", "history", "--format", "json", ref).stdout)
    assert listed[0]["id"].startswith("sha256:") and all(e["id"] is None for e in listed[1:])
    assert bx(script_runner, "history", "-q", ref).stdout.strip() == listed[0]["id"][7:19]
    templated = bx(script_runner, "history", "--format", "{{.ID}} {{.CreatedAt}} {{.Size}}", ref)
    assert templated.returncode == 0 and templated.stdout.split()[0] == listed[0]["id"][7:19]
    assert_one_line_error(bx(script_runner, "history", "nope:1"), "no such image: nope:1")
