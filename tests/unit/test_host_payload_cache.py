"""The payload cache over time: uses are recorded, builds prune idle payloads, and a
memory checkpoint resumes only on the payload it was taken on."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from boxlite_cli.errors import PayloadError
from boxlite_cli.payload import (
    PAYLOAD_MAX_IDLE_S,
    USE_MARK_INTERVAL_S,
    Payload,
    find_payload,
    prune_payloads,
)
from boxlite_cli.runtime.snapshots import MEMORY_PAYLOAD, memory_payload, record_payload

DAY = 86400.0


def built(cache: Path, name: str, last_used: float, agent_root: bytes = b"agent") -> Payload:
    payload = Payload(cache / name)
    payload.root.mkdir(parents=True)
    payload.manifest_path.write_text(json.dumps({"hash": name}))
    payload.agent_root.write_bytes(agent_root)
    os.chmod(payload.agent_root, 0o444)  # sealed, as images/build.py leaves it
    os.utime(payload.root, (last_used, last_used))
    return payload


def test_a_build_prunes_only_complete_payloads_idle_for_long(tmp_path: Path) -> None:
    now = time.time()
    old = now - PAYLOAD_MAX_IDLE_S - DAY
    idle = built(tmp_path, "a" * 16, old)
    recent = built(tmp_path, "b" * 16, now - DAY)
    kept = built(tmp_path, "c" * 16, old)  # the one just built
    partial = tmp_path / ("d" * 16)  # no manifest: not ours to judge
    partial.mkdir()
    os.utime(partial, (old, old))
    for other in ("stages", "build.lock", "not-a-payload-name"):
        (tmp_path / other).mkdir()
        os.utime(tmp_path / other, (old, old))
    (tmp_path / "current").symlink_to(kept.root.name)

    assert prune_payloads(tmp_path, keep={kept.root.name}, now=now) == [idle.root.name]

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["b" * 16, "c" * 16, "d" * 16, "stages", "build.lock", "not-a-payload-name", "current"])
    assert recent.manifest_path.is_file() and kept.manifest_path.is_file()
    assert prune_payloads(tmp_path, keep={kept.root.name}, now=now) == []


def test_a_use_renews_the_payload_at_most_hourly(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    payload = built(tmp_path, "a" * 16, now - 10 * DAY)
    monkeypatch.setenv("BOXLITE_PAYLOAD", str(payload.root))
    assert find_payload() == payload
    assert payload.root.stat().st_mtime >= now - 5  # every command's lookup is a use
    recently = now - USE_MARK_INTERVAL_S / 2
    os.utime(payload.root, (recently, recently))
    payload.mark_used()
    assert payload.root.stat().st_mtime == pytest.approx(recently)  # no write this time
    prune_payloads(tmp_path, keep=set(), now=now)
    assert payload.manifest_path.is_file()


def checkpoint_on_an_old_payload(cache: Path, idle_days: float) -> tuple[Payload, Payload, Path]:
    """An old payload, the current one, and a checkpoint's memory taken on the old one."""
    now = time.time()
    old = built(cache, "a" * 16, now - idle_days * DAY, b"old agent disk")
    current = built(cache, "b" * 16, now, b"new agent disk")
    memdir = cache / "ck.memory"
    memdir.mkdir()
    record_payload(memdir, old.agent_root)
    return old, current, memdir


def test_a_checkpoint_resumes_on_the_payload_it_was_taken_on(tmp_path: Path) -> None:
    now = time.time()
    old, current, memdir = checkpoint_on_an_old_payload(tmp_path, 10)
    assert json.loads((memdir / MEMORY_PAYLOAD).read_text())["payload"] == "a" * 16

    assert memory_payload(memdir, current) == old
    assert old.root.stat().st_mtime >= now - 5  # a resume is a use: not pruned soon
    record_payload(memdir, current.agent_root)
    assert memory_payload(memdir, current) == current
    # a checkpoint from before the record: the payload of the day
    (memdir / MEMORY_PAYLOAD).unlink()
    assert memory_payload(memdir, current) == current


@pytest.mark.parametrize("change", ["pruned", "rebuilt", "unreadable"])
def test_a_checkpoint_whose_payload_is_gone_is_refused(tmp_path: Path, change: str) -> None:
    old, current, memdir = checkpoint_on_an_old_payload(tmp_path, 40)
    if change == "pruned":
        assert prune_payloads(tmp_path, keep={"b" * 16}) == ["a" * 16]
        needle = "payload aaaaaaaaaaaaaaaa, which is no longer on this machine (now bbbb"
    elif change == "rebuilt":  # same name, another disk: its page cache would lie
        os.chmod(old.agent_root, 0o644)
        old.agent_root.write_bytes(b"rebuilt agent disk")
        needle = "no longer on this machine"
    else:
        (memdir / MEMORY_PAYLOAD).write_text("{not json")
        needle = "unreadable"
    with pytest.raises(PayloadError) as caught:
        memory_payload(memdir, current, "web", "ck")
    assert needle in caught.value.message
    if change != "unreadable":
        assert caught.value.hint == "restore its disk instead: boxlite snapshot restore web ck"


def test_the_build_hint_works_from_any_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make payload` alone works only in the checkout: the hint names it (-C)."""
    from boxlite_cli.payload import SOURCE_ROOT, build_hint

    monkeypatch.delenv("BOXLITE_PAYLOAD", raising=False)
    assert build_hint() == f"build it with: make -C {SOURCE_ROOT} payload"
    monkeypatch.setenv("BOXLITE_PAYLOAD", "/nowhere")  # (then no build would be used)
    assert build_hint().startswith("$BOXLITE_PAYLOAD names no built payload: unset it")
