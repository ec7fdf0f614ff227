"""Completions and man pages are generated from the click tree and must not go stale."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from boxlite_cli.cli import docs
from boxlite_cli.cli.app import COMMANDS

BOXLITE = str(Path(sys.executable).with_name("boxlite"))


def test_completions_and_man_pages_are_fresh() -> None:
    assert docs.main(["--check"]) == 0, "run: python -m boxlite_cli.cli.docs"


def test_every_command_has_a_man_page() -> None:
    pages = docs.man_pages()
    assert "boxlite.1" in pages
    for name in COMMANDS:
        page = pages[f"boxlite-{name}.1"]
        assert page.startswith(f'.TH "BOXLITE-{name.upper()}" "1"')
        assert ".SH SYNOPSIS" in page


def test_every_page_a_page_points_to_exists() -> None:
    """A group's page names its subcommands' pages (boxlite-image-ls(1)): each is made,
    with the subcommand's own options (snapshot create --memory)."""
    pages = docs.man_pages()
    for text in pages.values():
        for ref in re.findall(r"\\fB(boxlite[a-z0-9-]*)\\fR\(1\)", text):
            assert f"{ref}.1" in pages, ref
    assert "--memory" in pages["boxlite-snapshot-create.1"]
    assert "boxlite snapshot create" in pages["boxlite-snapshot-create.1"]


def test_completion_command_prints_the_checked_in_script() -> None:
    for shell, fname in docs.SHELLS.items():
        out = subprocess.run([BOXLITE, "completion", shell], capture_output=True, text=True,
                             check=True)
        assert out.stdout == (docs.ROOT / "completions" / fname).read_text()


def test_box_names_complete_for_box_commands(tmp_path: Path) -> None:
    """Plant a box record in a home and ask bash completion for `boxlite stop <TAB>`."""
    box_id = "ab" * 32
    box = tmp_path / "boxes" / box_id
    box.mkdir(parents=True)
    state = {
        "id": box_id, "name": "webserver", "status": "exited", "created_at": 1.0,
        "config": {"image": "x", "image_id": "sha256:x", "rootfs_base": "",
                   "process": {"argv": ["true"]}},
    }
    (box / "state.json").write_text(json.dumps(state))
    env = {**os.environ, "BOXLITE_HOME": str(tmp_path), "_BOXLITE_COMPLETE": "bash_complete",
           "COMP_WORDS": "boxlite stop w", "COMP_CWORD": "2"}
    out = subprocess.run([BOXLITE], env=env, capture_output=True, text=True)
    assert "webserver" in out.stdout
    env["COMP_WORDS"] = "boxlite stop x"
    out = subprocess.run([BOXLITE], env=env, capture_output=True, text=True)
    assert "webserver" not in out.stdout
