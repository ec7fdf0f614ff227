"""Cache of the slow, rarely changing build stages (the mmdebstrap runs).

The payload hash covers the guest agent, so every agent edit means a new
payload; the Debian trees under it only change with their recipe. A stage is
kept in `<payload cache>/stages/<name>-<key>/`, where the key hashes the
stage's recipe, and is reused by later builds. Only the newest stage of each
name is kept. The caller holds the build lock.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from .proc import Log, remove_tree

_COMPLETE = ".complete"


def recipe_key(recipe: object, *sources: Path) -> str:
    """Hash of a JSON-able recipe and the source files that carry it out."""
    h = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    for source in sources:
        h.update(source.read_bytes())
    return h.hexdigest()[:16]


class StageCache:
    """Directories built once per recipe key and reused until the key changes."""

    def __init__(self, root: Path, log: Log, *, rebuild: bool = False) -> None:
        self.root = root
        self.log = log
        self.rebuild = rebuild

    def get(self, name: str, key: str, build: Callable[[Path], None]) -> Path:
        """The stage directory `name`-`key`, calling `build(tmpdir)` to make it if needed."""
        final = self.root / f"{name}-{key}"
        if (final / _COMPLETE).is_file() and not self.rebuild:
            self.log(f"{name}: reusing cached stage {final.name}")
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.root))
        try:
            build(tmp)
            (tmp / _COMPLETE).touch()
            remove_tree(final)
            tmp.rename(final)
        except BaseException:
            remove_tree(tmp)
            raise
        self._prune(name, keep=final)
        return final

    def _prune(self, name: str, keep: Path) -> None:
        for old in self.root.glob(f"{name}-*"):
            if old != keep:
                remove_tree(old)

    def clean_partial(self) -> None:
        """Remove leftovers of builds that were killed (`.<name>-*` temp dirs)."""
        if self.root.is_dir():
            for leftover in self.root.glob(".*-*"):
                remove_tree(leftover)
