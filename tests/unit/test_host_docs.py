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


def _complete(home: Path, words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (a real boxlite, in
    the directory `home`/cwd: host paths are offered from there)."""
    env = {**os.environ, "BOXLITE_HOME": str(home), "_BOXLITE_COMPLETE": "bash_complete",
           "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    cwd = home / "cwd"
    cwd.mkdir(exist_ok=True)
    out = subprocess.run([BOXLITE], env=env, capture_output=True, text=True, timeout=60,
                         cwd=cwd)
    assert out.stderr == ""
    return [line.split(",", 1)[1] for line in out.stdout.splitlines() if "," in line]


def test_box_names_complete_by_what_the_command_takes(tmp_path: Path) -> None:
    """Planted box records: stop offers running boxes, start stopped ones, rm any;
    what the line has already is not offered again."""
    boxes = [("web-up", "running", False), ("web-down", "exited", True),
             ("web-nap", "running", True)]
    for i, (name, status, paused) in enumerate(boxes):
        box_id = f"{i}b" * 32
        box = tmp_path / "boxes" / box_id
        box.mkdir(parents=True)
        (box / "state.json").write_text(json.dumps({
            "id": box_id, "name": name, "status": status, "created_at": 1.0,
            "paused": paused,  # (a stale flag on an exited box: not paused)
            "config": {"image": "x", "image_id": "sha256:x", "rootfs_base": "",
                       "process": {"argv": ["true"]}}}))
    assert _complete(tmp_path, "boxlite stop w") == ["web-nap", "web-up"]
    assert _complete(tmp_path, "boxlite exec w") == ["web-nap", "web-up"]
    assert _complete(tmp_path, "boxlite pause w") == ["web-up"]
    assert _complete(tmp_path, "boxlite unpause w") == ["web-nap"]
    assert _complete(tmp_path, "boxlite start w") == ["web-down"]
    assert _complete(tmp_path, "boxlite rm w") == ["web-down", "web-nap", "web-up"]
    assert _complete(tmp_path, "boxlite rm web-down w") == ["web-nap", "web-up"]
    assert _complete(tmp_path, "boxlite stop x") == []
    # cp: the host's paths that match, then BOX: for any box
    (tmp_path / "cwd").mkdir(exist_ok=True)
    (tmp_path / "cwd" / "web-data").mkdir()
    (tmp_path / "cwd" / "web-log.txt").write_text("")
    assert _complete(tmp_path, "boxlite cp web-d") == ["web-data/", "web-down:"]
    assert _complete(tmp_path, "boxlite cp ./f web-") == [
        "web-data/", "web-log.txt", "web-down:", "web-nap:", "web-up:"]
    assert _complete(tmp_path, "boxlite cp web-data/") == []
    assert _complete(tmp_path, "boxlite cp web-up:/et") == []


def test_volumes_snapshots_checkpoints_and_signals_complete(tmp_path: Path) -> None:
    for volume in ("cache", "data"):
        (tmp_path / "volumes" / volume / "_data").mkdir(parents=True)
        (tmp_path / "volumes" / volume / "volume.json").write_text('{"created_at": 1}')
    box_id = "5b" * 32
    box = tmp_path / "boxes" / box_id
    (box / "disks").mkdir(parents=True)
    (box / "state.json").write_text(json.dumps({
        "id": box_id, "name": "web", "status": "exited", "created_at": 1.0,
        "config": {"image": "x", "image_id": "sha256:x", "rootfs_base": "",
                   "process": {"argv": ["true"]}}}))
    (tmp_path / "names").mkdir()
    (tmp_path / "names" / "web").symlink_to(box_id)
    (box / "disks" / "snapshots.json").write_text(json.dumps({"snapshots": [
        {"name": "before", "file": "/x", "created": 1.0},
        {"name": "warm", "file": "/y", "created": 2.0, "memory": "/m"},
        {"name": "clone-1", "file": "/z", "created": 3.0, "owner": {"pid": 1}}]}))
    assert _complete(tmp_path, "boxlite volume rm ") == ["cache", "data"]
    assert _complete(tmp_path, "boxlite volume inspect cache ") == ["data"]
    assert _complete(tmp_path, "boxlite snapshot rm web ") == ["before", "warm"]
    assert _complete(tmp_path, "boxlite snapshot restore web b") == ["before"]
    assert _complete(tmp_path, "boxlite start --checkpoint ") == ["warm"]
    assert _complete(tmp_path, "boxlite run --from ") == ["web:warm"]
    assert _complete(tmp_path, "boxlite kill -s TE") == ["TERM"]
    assert _complete(tmp_path, "boxlite stop -s SIGUS") == ["SIGUSR1", "SIGUSR2"]
    assert "HUP" in _complete(tmp_path, "boxlite run --stop-signal ")
    # -v: host paths, then volumes (`NAME:`, the path in the box to follow), which
    # is the box's: nothing offered after the `:`
    (tmp_path / "cwd").mkdir(exist_ok=True)
    (tmp_path / "cwd" / "dist").mkdir()
    (tmp_path / "cwd" / ".hidden").mkdir()
    assert _complete(tmp_path, "boxlite run -v ") == ["dist/", "cache:", "data:"]
    assert _complete(tmp_path, "boxlite create --volume d") == ["dist/", "data:"]
    assert _complete(tmp_path, "boxlite run -v .") == [".hidden/"]
    assert _complete(tmp_path, f"boxlite run -v {tmp_path}/cw") == [f"{tmp_path}/cwd/"]
    assert _complete(tmp_path, "boxlite run -v data:/") == []
    # --mount: its keys, the types, a volume mount's volumes
    assert _complete(tmp_path, "boxlite run --mount t") == ["type=", "target=", "tmpfs-size=",
                                                            "tmpfs-mode="]
    assert _complete(tmp_path, "boxlite run --mount type=v") == ["type=volume,"]
    assert _complete(tmp_path, "boxlite run --mount type=volume,source=c") == [
        "type=volume,source=cache,"]
    assert _complete(tmp_path, "boxlite run --mount type=bind,src=d") == [
        "type=bind,src=dist/"]  # (a bind's source: host paths)
    assert _complete(tmp_path, "boxlite run --mount type=volume,t") == [
        "type=volume,target=", "type=volume,tmpfs-size=", "type=volume,tmpfs-mode="]
    # a listing's --filter: its keys, then what a key takes
    assert _complete(tmp_path, "boxlite ps -f st") == ["status="]
    assert _complete(tmp_path, "boxlite ps --filter status=ru") == ["status=running"]
    assert _complete(tmp_path, "boxlite ps -a -f name=w") == ["name=web"]
    assert _complete(tmp_path, "boxlite images -f dangling=") == ["dangling=false",
                                                                  "dangling=true"]
    assert _complete(tmp_path, "boxlite volume ls -f name=") == ["name=cache", "name=data"]


def test_image_references_complete_as_docker_prints_them(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    digest = "sha256:" + "c" * 64
    (images / "repositories.json").write_text(json.dumps({
        "docker.io/library/alpine:3": digest, "localhost/debian:bookworm": digest,
        f"localhost/debian@{digest}": digest}))
    assert _complete(tmp_path, "boxlite run ") == ["alpine:3", "localhost/debian:bookworm"]
    assert _complete(tmp_path, "boxlite create al") == ["alpine:3"]
    assert _complete(tmp_path, "boxlite rmi alpine:3 ") == ["localhost/debian:bookworm"]


def test_what_follows_the_image_or_box_is_the_boxs_command_line(tmp_path: Path) -> None:
    """run IMAGE COMMAND..., exec BOX COMMAND...: once IMAGE or BOX is given, no option
    of boxlite's is offered (a `-v` there is the box command's)."""
    (tmp_path / "volumes" / "data" / "_data").mkdir(parents=True)
    (tmp_path / "volumes" / "data" / "volume.json").write_text('{"created_at": 1}')
    assert "--rm" in _complete(tmp_path, "boxlite run --")
    assert "--env" in _complete(tmp_path, "boxlite exec --")
    for line in ("boxlite run alpine --", "boxlite run alpine ls -", "boxlite create alpine -",
                 "boxlite exec web --", "boxlite exec web ls -v ", "boxlite run alpine sh -v "):
        assert _complete(tmp_path, line) == [], line
    assert _complete(tmp_path, "boxlite run -v ") == ["data:"]  # (before IMAGE: boxlite's)


def test_a_paragraph_kept_as_written_stays_so_in_its_man_page() -> None:
    """click's `\\b` (completion's three install lines) is .nf in roff, not filled."""
    page = docs.man_pages()["boxlite-completion.1"]
    kept = page.split(".nf\n", 1)[1].split("\n.fi", 1)[0].splitlines()
    assert [line.split(":")[0] for line in kept] == ["bash", "zsh", "fish"]
    assert "\b" not in page
