"""What `run`/`create` say of the pull of a missing image: docker's "Unable to find
image" line before the progress where the progress is drawn (after the pull where it
is not, so that a failed pull is one line), and a failure's own hint kept."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boxlite_cli.errors import AuthError, NotFound
from boxlite_cli.oci.pull import NoProgress, PullResult
from boxlite_cli.oci.reference import parse_reference
from boxlite_cli.runtime.runtime import Runtime
from boxlite_cli.state.paths import Paths

REF = "registry.example/team/app:v2"


class _Drawn:
    """A progress display that draws (any other kind than NoProgress)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


class _Ops:
    def __init__(self, said: list[str], error: Exception | None = None) -> None:
        self.said, self.error = said, error

    def find(self, ref: str) -> None:
        return None

    def pull(self, reference: Any, progress: Any) -> PullResult:
        self.said.append("(pulling)")
        if self.error is not None:
            raise self.error
        return PullResult(image=_Image(), repo_digest="sha256:" + "d" * 64, downloaded=True)


class _Image:
    reference = parse_reference(REF)


def _runtime(tmp_path: Path, said: list[str], drawn: bool, ops: _Ops) -> Runtime:
    @contextlib.contextmanager
    def display(title: str) -> Iterator[Any]:
        yield _Drawn() if drawn else NoProgress()

    home = tmp_path / "home"
    rt = Runtime(Paths(data=home, config=home / "config", cache=home / "cache"),
                 pull_display=display, notice=said.append)
    rt.__dict__["image_ops"] = ops
    return rt


@pytest.mark.parametrize("drawn", [True, False])
def test_unable_to_find_comes_before_a_drawn_pull_and_after_a_quiet_one(
        tmp_path: Path, drawn: bool) -> None:
    said: list[str] = []
    _runtime(tmp_path, said, drawn, _Ops(said)).image(REF)
    unable = f"Unable to find image '{REF}' locally"
    first = [unable, "(pulling)"] if drawn else ["(pulling)", unable]
    assert said[:2] == first
    assert said[2].startswith("Digest: sha256:") and said[3].startswith("Status: Downloaded")


HAS = "registry.example/team/app:v2 is not in the local store, which has registry.example/team/app:v1"


@pytest.mark.parametrize(("error", "hint"), [
    (AuthError("registry.example requires a login", hint="run: boxlite login registry.example"),
     f"{HAS}; run: boxlite login registry.example"),
    (NotFound("manifest unknown", hint="the local tags say more"), HAS),
])
def test_a_failed_pulls_hint_is_kept_beside_the_local_tags(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, hint: str) -> None:
    """(run of an image needing a login said only which tags the store had: the way to
    log in was lost)"""
    said: list[str] = []
    rt = _runtime(tmp_path, said, False, _Ops(said, error))
    monkeypatch.setattr(rt, "local_tags", lambda reference: ["registry.example/team/app:v1"])
    with pytest.raises(type(error)) as e:
        rt.image(REF)
    assert getattr(e.value, "hint", None) == hint
