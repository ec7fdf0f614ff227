"""The import graph keeps the layers: CLI -> library (runtime) -> shim -> VMM, agent and
state, each importing only what lies below it; click and rich live in cli/ alone.

Read from the sources with `ast` (imports inside functions count too: a lazy import is
still a dependency), so a shortcut upward fails here, not in review."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "boxlite_cli"

# Each part of boxlite_cli, by its layer: a part may import its own layer's modules and
# those of lower layers only.
LAYERS: dict[str, int] = {
    # the bottom: no boxlite_cli imports but these
    "errors": 0, "fdio": 0, "childdeath": 0, "outfile": 0, "compression": 0,
    "state": 1,  # records, paths, settings on disk
    "payload": 2,  # the guest payload's files
    "disks": 3, "vmm": 3, "agent": 3,  # qemu-img, QEMU and cloud-hypervisor, the agent's client
    "transfer": 4,  # tar streams between host and box
    "oci": 5,  # images: references, registries, the store
    "shim": 6,  # the per-box host process
    "runtime": 7,  # the library the CLI drives
    "cli": 8, "entry": 8, "__main__": 8,  # click commands, and the console script
}
CLI_ONLY = ("click", "rich")


def modules() -> Iterator[tuple[str, Path]]:
    """(the part of boxlite_cli a module belongs to, its path), generated code aside."""
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if "pb" in rel.parts[:-1]:  # (protoc's output)
            continue
        yield (rel.parts[0] if len(rel.parts) > 1 else rel.stem), path


def imported(path: Path) -> Iterator[str]:
    """Every module name `path` imports, at any depth of its code."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_every_part_has_a_layer() -> None:
    assert sorted({part for part, _ in modules()} - {"__init__"} - set(LAYERS)) == []


@pytest.mark.parametrize("part", sorted(set(LAYERS) - {"__main__"}))
def test_a_part_imports_only_its_own_layer_and_those_below(part: str) -> None:
    upward = []
    for owner, path in modules():
        if owner != part:
            continue
        for name in imported(path):
            top = name.split(".")
            if top[0] != "boxlite_cli" or len(top) < 2 or top[1] == part:
                continue
            if LAYERS.get(top[1], 99) > LAYERS[part]:
                upward.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert upward == []


def test_click_and_rich_are_imported_in_cli_only() -> None:
    outside = [f"{path.relative_to(PACKAGE.parent)} imports {name}"
               for part, path in modules() if part != "cli"
               for name in imported(path) if name.split(".")[0] in CLI_ONLY]
    assert outside == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """(the reader finds imports inside functions, where the lazy ones are)"""
    module = tmp_path / "m.py"
    module.write_text("def f() -> None:\n    from boxlite_cli.cli.app import main\n")
    assert list(imported(module)) == ["boxlite_cli.cli.app"]
