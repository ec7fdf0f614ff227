"""Disk chains and snapshots (real qemu-img on tiny disks), warm-start template keys."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path

import pytest

from boxlite_cli.disks.chain import BoxDisks, qcow2_backing, validate_snapshot_name
from boxlite_cli.disks.qcow2 import (
    create_overlay,
    create_overlay_cached,
    create_root_disk,
    empty_overlay_of,
    virtual_size,
)
from boxlite_cli.errors import Conflict, NotFound, UsageError
from boxlite_cli.runtime.templates import Templates, template_key
from boxlite_cli.vmm.base import NET_USER, VmSpec


def make_box(root: Path, name: str, base: Path) -> BoxDisks:
    disks = BoxDisks(root / name / "disks")
    disks.dir.mkdir(parents=True)
    create_overlay(base, disks.active)
    return disks


@pytest.fixture
def base(tmp_path: Path) -> Path:
    path = tmp_path / "base.ext4"
    path.write_bytes(b"\0" * (1 << 20))
    return path


def test_snapshots_of_a_stopped_box_chain_and_restore(tmp_path: Path, base: Path) -> None:
    disks = make_box(tmp_path, "a", base)
    assert qcow2_backing(disks.active) == str(base)
    frozen, _ = disks.plan("one")
    disks.freeze_active(frozen)
    disks.record("one", frozen)
    assert qcow2_backing(disks.active) == str(frozen)  # new layer on the frozen one
    assert qcow2_backing(frozen) == str(base)
    frozen2, _ = disks.plan("two")
    disks.freeze_active(frozen2)
    disks.record("two", frozen2)
    disks.restore("one")
    assert qcow2_backing(disks.active) == str(frozen)
    assert [s.name for s in disks.all()] == ["one", "two"]
    # "one" backs "two" and the active disk: refused with the reason; "two" can go
    with pytest.raises(Conflict, match="cannot be removed"):
        disks.remove("one", [tmp_path / "a"])
    # boxes made from "one" (clones, run --from): refused, each of them named
    for other in ("c0ffee1", "c0ffee2"):
        make_box(tmp_path, other, frozen)
    with pytest.raises(Conflict) as refused:
        disks.remove("one", [tmp_path / "a", tmp_path / "c0ffee1", tmp_path / "c0ffee2"])
    assert refused.value.message == ("snapshot 'one' cannot be removed: the disks of 2 other "
                                     "box(es) are built on it (c0ffee1, c0ffee2)")
    disks.remove("two", [tmp_path / "a"])
    assert not frozen2.exists()
    with pytest.raises(NotFound):
        disks.get("two")


def test_a_snapshot_another_box_builds_on_is_kept(tmp_path: Path, base: Path) -> None:
    source = make_box(tmp_path, "a", base)
    frozen, _ = source.plan("shared")
    source.freeze_active(frozen)
    source.record("shared", frozen)
    source.restore("shared")
    other = BoxDisks(tmp_path / "b" / "disks")
    other.dir.mkdir(parents=True)
    create_overlay(frozen, other.active, base_format="qcow2")
    source.active.unlink()  # even with the source's own disk gone
    with pytest.raises(Conflict, match=r"the disks of 1 other box\(es\) are built on it \(b\)"):
        source.remove("shared", [tmp_path / "a", tmp_path / "b"])


def test_snapshot_names_are_checked_and_unique(tmp_path: Path, base: Path) -> None:
    disks = make_box(tmp_path, "a", base)
    for bad in ("", "../x", "a/b", ".hidden", "-x", "x" * 65, "sp ace"):
        with pytest.raises(UsageError, match="invalid snapshot name"):
            validate_snapshot_name(bad)
    frozen, _ = disks.plan("ok-1.2_3")
    disks.freeze_active(frozen)
    disks.record("ok-1.2_3", frozen)
    with pytest.raises(Conflict, match="already has a snapshot"):
        disks.plan("ok-1.2_3")


def test_a_failed_freeze_leaves_the_active_disk_in_place(tmp_path: Path, base: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    disks = make_box(tmp_path, "a", base)
    frozen, _ = disks.plan("x")

    def broken(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("boxlite_cli.disks.chain.create_overlay", broken)
    with pytest.raises(OSError):
        disks.freeze_active(frozen)
    assert disks.active.is_file() and not frozen.exists()
    assert qcow2_backing(disks.active) == str(base)


def spec(tmp_path: Path, **changes: object) -> VmSpec:
    for name in ("vmlinux", "initrd.img", "agent-root.ext4"):
        if not (tmp_path / name).exists():
            (tmp_path / name).write_bytes(b"x")
    base = VmSpec(kernel=tmp_path / "vmlinux", initrd=tmp_path / "initrd.img",
                  agent_root=tmp_path / "agent-root.ext4", rootfs_disk=tmp_path / "r.qcow2",
                  console_log=tmp_path / "c.log", agent_socket=tmp_path / "a.sock",
                  control_socket=tmp_path / "q.sock", network=NET_USER)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_cached_empty_overlay_is_what_qemu_img_makes(tmp_path: Path, base: Path) -> None:
    made, copied = tmp_path / "made.qcow2", tmp_path / "copied.qcow2"
    create_overlay(base, made)
    create_overlay_cached(base, copied)
    assert copied.read_bytes() == made.read_bytes()
    assert qcow2_backing(copied) == str(base)
    cached = empty_overlay_of(base)
    stamp = cached.stat().st_mtime_ns
    create_overlay_cached(base, tmp_path / "again.qcow2")  # from the cache
    assert cached.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob("*.partial"))
    time.sleep(0.01)
    base.write_bytes(b"\0" * (2 << 20))  # the base rebuilt (another size): remade
    create_overlay_cached(base, copied)
    create_overlay(base, made)
    assert copied.read_bytes() == made.read_bytes()


def test_template_keys_change_with_every_input(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from boxlite_cli.vmm import cmdline

    monkeypatch.setattr(cmdline, "host_tsc_khz", lambda: 2445422)
    qemu = tmp_path / "qemu"
    qemu.write_bytes(b"qemu")
    key = template_key("qemu", str(qemu), spec(tmp_path), "sha256:img")
    assert key == template_key("qemu", str(qemu), spec(tmp_path, rootfs_disk=tmp_path / "other"),
                               "sha256:img")  # per-box paths do not matter
    variants = [
        template_key("qemu", str(qemu), spec(tmp_path, cpus=2), "sha256:img"),
        template_key("qemu", str(qemu), spec(tmp_path, memory_mib=1024), "sha256:img"),
        template_key("qemu", str(qemu), spec(tmp_path, accel="kvm"), "sha256:img"),
        template_key("qemu", str(qemu), spec(tmp_path, network="none"), "sha256:img"),
        template_key("qemu", str(qemu), spec(tmp_path, extra_cmdline=("x=1",)), "sha256:img"),
        template_key("qemu", str(qemu), spec(tmp_path), "sha256:other"),
    ]
    monkeypatch.setattr(cmdline, "host_tsc_khz", lambda: 3000000)  # another host's TSC
    variants.append(template_key("qemu", str(qemu), spec(tmp_path), "sha256:img"))
    monkeypatch.setattr(cmdline, "host_tsc_khz", lambda: 2445422)
    assert len({key, *variants}) == len(variants) + 1
    time.sleep(0.01)
    (tmp_path / "agent-root.ext4").write_bytes(b"a new payload")  # any input file changes
    assert template_key("qemu", str(qemu), spec(tmp_path), "sha256:img") != key
    # a primed template is another key, and names the base disk file it was primed on
    base = tmp_path / "base.ext4"
    base.write_bytes(b"base")
    primed = template_key("qemu", str(qemu), spec(tmp_path), "sha256:img", primed_on=base)
    assert primed not in (key, None)
    time.sleep(0.01)
    base.write_bytes(b"the base rebuilt")  # the same image id, another file
    assert template_key("qemu", str(qemu), spec(tmp_path), "sha256:img", primed_on=base) != primed
    # volumes: their 9p devices (tags, read-only) are in the key, their host paths not
    from boxlite_cli.vmm.base import Share
    one = template_key("qemu", str(qemu), spec(tmp_path, shares=(Share("vol0", "/x"),)), "i")
    assert one is not None and one != template_key("qemu", str(qemu), spec(tmp_path), "i")
    assert template_key("qemu", str(qemu), spec(tmp_path, shares=(Share("vol0", "/y"),)),
                        "i") == one
    assert template_key("qemu", str(qemu), spec(tmp_path, shares=(Share("vol0", "/x", True),)),
                        "i") != one
    # what a template cannot carry: other VMMs, the passt backend
    assert template_key("cloud-hypervisor", None, spec(tmp_path), "i") is None
    assert template_key("qemu", str(qemu), spec(tmp_path, network="passt"), "i") is None


def test_template_keys_follow_the_root_disk_size(tmp_path: Path, base: Path) -> None:
    """--disk-size: the guest kernel keeps the disk size it read, so a template is of one
    size; boxes of one size share it, whatever their disks' paths."""
    qemu = tmp_path / "qemu"
    qemu.write_bytes(b"qemu")
    disks = {}
    for name, size in (("a", 0), ("b", 0), ("c", 64 << 20)):
        disks[name] = tmp_path / f"{name}.qcow2"
        create_root_disk(base, disks[name], size)

    def key(name: str) -> str | None:
        return template_key("qemu", str(qemu), spec(tmp_path, rootfs_disk=disks[name]), "i")

    assert virtual_size(disks["a"]) == base.stat().st_size
    assert virtual_size(disks["c"]) == 64 << 20
    assert key("a") == key("b") != key("c")
    assert None not in (key("a"), key("c"))


def test_a_root_disk_is_never_made_smaller_than_its_base(tmp_path: Path, base: Path) -> None:
    disk = tmp_path / "r.qcow2"
    create_root_disk(base, disk, 4096)  # (the caller refuses it: check_disk_size)
    assert virtual_size(disk) == base.stat().st_size
    assert qcow2_backing(disk) == str(base)


def test_a_template_is_ready_only_when_complete(tmp_path: Path) -> None:
    templates = Templates(tmp_path / "templates")
    path = templates.path("k")
    path.mkdir(parents=True)
    (path / "memory.state").write_bytes(b"ram")
    assert templates.ready("k") is None  # no metadata yet: a save still in progress
    (path / "template.json").write_text("{}")
    assert templates.ready("k") == path
    assert templates.ready("k", primed=True) is None  # a primed one keeps its disk too
    (path / "rootfs.qcow2").write_bytes(b"layer")
    assert templates.ready("k", primed=True) == path
    assert templates.remove_all() > 0 and templates.ready("k") is None


def test_a_template_with_a_ram_image_needs_its_device_state_too(tmp_path: Path) -> None:
    templates = Templates(tmp_path / "templates")
    path = templates.path("k")
    path.mkdir(parents=True)
    (path / "template.json").write_text("{}")
    (path / "ram.img").write_bytes(b"ram")
    assert templates.ready("k") is None  # a save that stopped between the two
    (path / "device.state").write_bytes(b"devices")
    assert templates.ready("k") == path


def test_pruning_keeps_the_most_recently_used_templates_and_drops_idle_ones(
        tmp_path: Path) -> None:
    templates = Templates(tmp_path / "templates")
    now = 1_000_000_000.0
    day = 86400.0

    def template(name: str, last_used: float) -> Path:
        path = templates.path(name)
        path.mkdir(parents=True)
        (path / "ram.img").write_bytes(b"ram")
        (path / "template.json").write_text("{}")
        os.utime(path / "template.json", (last_used, last_used))
        path.with_name(f"{name}.lock").touch()
        return path

    for i in range(4):
        template(f"recent{i}", now - i * 60)
    template("older", now - 2 * day)
    template("idle", now - 20 * day)
    dead_save = templates.root / "k.partial-123"
    dead_save.mkdir()
    os.utime(dead_save, (now - 2 * 3600, now - 2 * 3600))
    live_save = templates.root / "j.partial-456"
    live_save.mkdir()
    os.utime(live_save, (now - 5, now - 5))
    # room for ten: only the one unused for too long goes, and the save that died
    assert templates.prune(keep=10, now=now) == ["idle", "k.partial-123"]
    # room for four: the least recently used beyond them go too
    assert templates.prune(keep=4, now=now) == ["older"]
    left = sorted(p.name for p in templates.root.iterdir())
    assert left == ["j.partial-456", *sorted(f"recent{i}{s}" for i in range(4)
                                            for s in ("", ".lock"))]


def test_the_primed_templates_of_a_removed_image_go_with_it(tmp_path: Path) -> None:
    """rmi deleted the image's base disk; its templates (their disk layer built on that
    base) stayed, ~130 MB each, and a new pull of it saved another beside them."""
    import subprocess

    templates = Templates(tmp_path / "templates")
    bases = {name: tmp_path / f"{name}.ext4" for name in ("kept", "removed")}
    for name, base in bases.items():
        base.write_bytes(b"\0" * 65536)
        path = templates.path(name)
        path.mkdir(parents=True)
        (path / "template.json").write_text("{}")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base),
                        str(path / "rootfs.qcow2")], check=True)
    unprimed = templates.path("unprimed")  # (no disk: a new pull of its image uses it)
    unprimed.mkdir()
    (unprimed / "template.json").write_text("{}")
    assert templates.drop_orphans() == []
    bases["removed"].unlink()
    assert templates.drop_orphans() == ["removed"]
    assert sorted(p.name for p in templates.root.iterdir()) == ["kept", "unprimed"]


def test_a_template_found_ready_counts_as_used_now(tmp_path: Path) -> None:
    templates = Templates(tmp_path / "templates")
    path = templates.path("k")
    path.mkdir(parents=True)
    (path / "memory.state").write_bytes(b"ram")
    (path / "template.json").write_text("{}")
    os.utime(path / "template.json", (1.0, 1.0))
    assert templates.ready("k") == path
    assert (path / "template.json").stat().st_mtime > 1.0
    assert templates.prune(keep=1) == []


def test_a_missing_snapshot_names_its_box(tmp_path: Path, base: Path) -> None:
    disks = BoxDisks(make_box(tmp_path, "a", base).dir, label="box web")
    with pytest.raises(NotFound) as caught:
        disks.get("warm")
    assert caught.value.message == "no snapshot 'warm' of box web"
    assert caught.value.hint == "list them with: boxlite snapshot ls web"


def qemu_io(disk: Path, command: str) -> str:
    proc = subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(disk)],
                          capture_output=True, text=True, check=True)
    assert "verification failed" not in proc.stdout, proc.stdout
    return proc.stdout


def test_removing_a_layer_of_a_stopped_box_merges_it_into_what_is_built_on_it(
        tmp_path: Path, base: Path) -> None:
    """A stopped box's snapshots are layers under its disk: removing one copies its
    data into the disks built on it (a later snapshot, the active disk), whose contents
    stay the same; a running box's cannot be merged."""
    disks = make_box(tmp_path, "a", base)
    for name, pattern, offset in (("one", 0x61, 0), ("two", 0x62, 1 << 16)):
        qemu_io(disks.active, f"write -P {pattern} {offset} 4096")
        frozen, _ = disks.plan(name)
        disks.freeze_active(frozen)
        disks.record(name, frozen)
    qemu_io(disks.active, f"write -P {0x63} {2 << 16} 4096")
    one, two = (Path(disks.get(n).file) for n in ("one", "two"))
    assert qcow2_backing(two) == str(one)

    with pytest.raises(Conflict, match="while the box runs"):
        disks.remove("one", [tmp_path / "a"])
    disks.remove("one", [tmp_path / "a"], merge=True)
    assert not one.exists() and qcow2_backing(two) == str(base)
    disks.remove("two", [tmp_path / "a"], merge=True)
    assert not two.exists() and qcow2_backing(disks.active) == str(base)
    assert disks.all() == []
    for pattern, offset in ((0x61, 0), (0x62, 1 << 16), (0x63, 2 << 16), (0, 3 << 16)):
        qemu_io(disks.active, f"read -P {pattern} {offset} 4096")


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("internal", [False, True])
def test_an_interrupt_waits_for_the_snapshot_worker(tmp_path: Path, internal: bool, signum: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    request: pytest.FixtureRequest) -> None:
    """Ctrl-C while the worker has the VM paused: it is not killed (subprocess.run
    killed it there, and the VM stayed paused for good). A user's snapshot, made, is
    kept with a warning; an internal one (a clone's, an export's) is taken back and the
    interrupt goes on to its maker."""
    import signal
    import sys
    import threading
    import types

    from boxlite_cli.runtime import snapshots

    done = tmp_path / "worker-done"
    worker = tmp_path / "worker"
    worker.write_text(f"#!/bin/sh\nsleep 1\ntouch {done}\necho '{{\"ok\": true}}'\n")
    worker.chmod(0o755)
    monkeypatch.setattr(snapshots, "sys", types.SimpleNamespace(executable=str(worker)))
    monkeypatch.setattr(snapshots, "box_disks", lambda rt, box_id: types.SimpleNamespace(
        get=lambda name: f"snapshot {name}"))
    removed: list[str] = []
    monkeypatch.setattr(snapshots, "remove", lambda rt, box_id, name: removed.append(name))
    warnings: list[str] = []
    rt = types.SimpleNamespace(warn=warnings.append)
    from boxlite_cli.cli.errors import ending_on_signals
    from boxlite_cli.errors import Interrupted

    sig = getattr(signal, signum)
    for each in (signal.SIGINT, signal.SIGTERM):  # (Ctrl-C's, and the default for TERM)
        previous = signal.signal(each, signal.default_int_handler if each == signal.SIGINT
                                 else signal.SIG_DFL)
        request.addfinalizer(lambda each=each, previous=previous: signal.signal(each, previous))
    threading.Timer(0.3, os.kill, (os.getpid(), sig)).start()
    owner = {"pid": os.getpid()} if internal else None
    if internal:
        with pytest.raises(KeyboardInterrupt if sig == signal.SIGINT else Interrupted), \
                ending_on_signals():  # (the commands' own: SIGTERM as Ctrl-C)
            snapshots._run_worker(rt, "box", "clone-1", False, owner)  # type: ignore[arg-type]
        assert (removed, warnings) == (["clone-1"], [])
    else:
        with ending_on_signals():
            got = snapshots._run_worker(rt, "box", "s1", False, owner)  # type: ignore[arg-type]
        assert got == "snapshot s1" and removed == []
        assert warnings == ["snapshot s1 was being taken when interrupted, and was finished "
                            "(its VM cannot be left paused midway)"]
    assert done.exists()  # (the worker ran to its end)
    assert sys.executable  # (the real one, given back)


def test_a_snapshot_whose_box_went_under_it_says_so(tmp_path: Path) -> None:
    """(rm -f during `snapshot create --memory`: "cannot reach QMP at /tmp/bl-0/...:
    [Errno 111] Connection refused")"""
    from boxlite_cli.errors import Conflict, NoSuchBox
    from boxlite_cli.runtime.runtime import Runtime
    from boxlite_cli.runtime.snapshots import _ended_meanwhile
    from boxlite_cli.state.paths import Paths
    from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status

    box_id = "cd" * 32
    home = tmp_path / "home"
    rt = Runtime(Paths(data=home, config=home / "config", cache=home / "cache"))
    assert isinstance(_ended_meanwhile(rt, box_id), NoSuchBox)
    rt.boxes.create_dir(box_id)
    rt.boxes.write(BoxState(id=box_id, name="big", status=Status.EXITED, config=BoxConfig(
        image="localhost/debian:bookworm", image_id="sha256:" + "1" * 64, rootfs_base="",
        process=ProcessSpec(argv=["true"]))))
    stopped = _ended_meanwhile(rt, box_id)
    assert isinstance(stopped, Conflict)
    assert stopped.message == "box big stopped while the snapshot was being taken"
