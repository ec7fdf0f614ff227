"""On-disk state: atomic writes, PID files, the box store, corrupt state files."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from boxlite_cli.errors import Conflict, NoSuchBox, NotFound, StateCorrupt, UsageError
from boxlite_cli.runtime.runtime import Runtime
from boxlite_cli.state import boxes as boxes_module
from boxlite_cli.state.atomic import write_bytes_atomic, write_json_atomic
from boxlite_cli.state.boxes import BoxStore, new_box_id, validate_name
from boxlite_cli.state.paths import Paths, home_paths, socket_dir
from boxlite_cli.state.pidfile import (
    ProcessRecord,
    process_start_time,
    read_pidfile,
    write_pidfile,
)
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status, load_state


def make_paths(root: Path) -> Paths:
    return Paths(data=root, config=root / "config", cache=root / "cache")


@pytest.fixture
def store(tmp_path: Path) -> BoxStore:
    paths = make_paths(tmp_path / "home")
    paths.ensure()
    return BoxStore(paths)


def make_state(box_id: str, name: str = "box", status: Status = Status.CREATED) -> BoxState:
    return BoxState(
        id=box_id, name=name, status=status,
        config=BoxConfig(image="debian:latest", image_id="sha256:" + "0" * 64, rootfs_base="/b",
                         process=ProcessSpec(argv=["sh", "-c", "echo hi"], env=["A=1"], cwd="/")),
    )


def add_box(store: BoxStore, box_id: str | None = None, name: str | None = None,
            status: Status = Status.CREATED) -> BoxState:
    box_id = box_id or new_box_id()
    name = name or f"box-{box_id[:6]}"
    store.create_dir(box_id)
    store.reserve_name(name, box_id)
    state = make_state(box_id, name, status)
    with store.lock(box_id):
        store.write(state)
    return state


# atomic writes -----------------------------------------------------------------------------

def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json_atomic(target, {"v": 1})
    write_json_atomic(target, {"v": 2, "more": [1, 2, 3]})
    assert json.loads(target.read_text()) == {"v": 2, "more": [1, 2, 3]}
    assert os.listdir(tmp_path) == ["state.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_bytes_atomic(target, b"raw", 0o644)
    assert target.read_bytes() == b"raw"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["state.json"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    write_bytes_atomic(target, b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_rm_boxs_record_is_written_without_fsync_a_kept_ones_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync (file and directory) only where a power loss must not lose the write: a
    `--rm` box's record lives seconds, and each fsync is on the path of every run."""
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    store = BoxStore(Paths(tmp_path / "data", tmp_path / "config", tmp_path / "cache"))
    for auto_remove, fsyncs in ((False, 2), (True, 0)):
        synced.clear()
        state = BoxState(id=new_box_id(), name=f"rm-{auto_remove}".lower(), config=BoxConfig(
            image="i", image_id="sha256:x", rootfs_base="", process=ProcessSpec(argv=["true"]),
            auto_remove=auto_remove))
        store.create_dir(state.id)
        store.write(state)
        assert len(synced) == fsyncs, auto_remove
        assert store.read(state.id) == state


def test_readers_never_see_a_torn_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    versions = [bytes([65 + i]) * 200_000 for i in range(4)]
    write_bytes_atomic(target, versions[0])
    stop = threading.Event()
    seen: set[bytes] = set()

    def reader() -> None:
        while not stop.is_set():
            seen.add(target.read_bytes())

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(40):
            write_bytes_atomic(target, versions[i % 4])
    finally:
        stop.set()
        t.join()
    assert seen <= set(versions)


# PID files ----------------------------------------------------------------------------------

def test_current_process_is_alive_and_round_trips(tmp_path: Path) -> None:
    me = ProcessRecord.current()
    assert me.pid == os.getpid()
    assert me.alive()
    write_pidfile(tmp_path / "x.pid", me)
    assert read_pidfile(tmp_path / "x.pid") == me


def test_same_pid_with_another_start_time_is_not_alive() -> None:
    me = ProcessRecord.current()
    assert not ProcessRecord(me.pid, me.start_time + 1).alive()
    assert not ProcessRecord(me.pid, me.start_time - 1).alive()


def test_dead_and_zombie_processes_are_not_alive() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    record = ProcessRecord.of(proc.pid)
    assert record is not None and record.alive()
    proc.kill()
    deadline = time.monotonic() + 10
    while record.alive() and time.monotonic() < deadline:  # a zombie until reaped
        time.sleep(0.01)
    assert not record.alive()
    proc.wait()
    assert not record.alive()
    assert ProcessRecord.of(proc.pid) is None or ProcessRecord.of(proc.pid) != record


def test_start_time_survives_a_command_name_with_parentheses() -> None:
    code = ("import sys; open('/proc/self/comm', 'w').write('x) y (z 1 2');"
            "print('renamed', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        before = process_start_time(proc.pid)
        assert proc.stdout is not None and proc.stdout.readline() == "renamed\n"
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "x) y (z 1 2"
        assert process_start_time(proc.pid) == before
        assert isinstance(before, int) and before > 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("content", ["", "{", "[]", '{"pid": "1", "start_time": 2}',
                                     '{"pid": 1}', "null", "\x00\xff"])
def test_unreadable_pidfiles_read_as_none(tmp_path: Path, content: str) -> None:
    path = tmp_path / "shim.pid"
    path.write_text(content, errors="surrogateescape")
    assert read_pidfile(path) is None
    assert read_pidfile(tmp_path / "absent.pid") is None


# names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bad name!", "", "-x", ".x", "_x", "a/b", "../x", "x" * 129,
                                  "caf\u00e9", "tab\there", "new\nline", "trailing\n", "a"])
def test_invalid_names(store: BoxStore, name: str) -> None:
    with pytest.raises(UsageError, match="invalid box name"):
        validate_name(name)
    with pytest.raises(UsageError):
        store.reserve_name(name, new_box_id())
    assert not any(store.names.iterdir()) if store.names.exists() else True


@pytest.mark.parametrize("name", ["ab", "web-1", "my_box.v2", "X" * 128, "0abc", "7-"])
def test_valid_names(name: str) -> None:
    validate_name(name)


def test_one_character_name_says_two_at_least() -> None:
    """docker's names have two characters at least (`a` is refused by `docker run`)."""
    with pytest.raises(UsageError, match="two characters at least"):
        validate_name("a")


def test_name_taken_by_a_live_box_is_a_conflict(store: BoxStore) -> None:
    first = add_box(store, name="web")
    other = new_box_id()
    store.create_dir(other)
    with pytest.raises(Conflict, match='"web" is already in use') as info:
        store.reserve_name("web", other)
    assert first.id[:12] in info.value.message
    assert os.readlink(store.names / "web") == first.id


def test_stale_reservation_is_reclaimed(store: BoxStore) -> None:
    store.names.mkdir(parents=True, exist_ok=True)
    os.symlink(new_box_id(), store.names / "web")  # its box no longer exists
    box_id = new_box_id()
    store.create_dir(box_id)
    store.reserve_name("web", box_id)
    assert os.readlink(store.names / "web") == box_id


def test_release_only_removes_ones_own_name(store: BoxStore) -> None:
    box = add_box(store, name="web")
    store.release_name("web", new_box_id())
    assert os.readlink(store.names / "web") == box.id
    store.release_name("web", box.id)
    assert not (store.names / "web").exists()
    store.release_name("web", box.id)  # idempotent


def test_rename_moves_the_reservation(store: BoxStore) -> None:
    box = add_box(store, name="old")
    store.rename(box.id, "old", "new")
    assert os.readlink(store.names / "new") == box.id
    assert not os.path.lexists(store.names / "old")


def _reserve_worker(data: str, name: str, barrier: Any, results: Any) -> None:
    """One process of the reservation race: make a box directory, then grab the name."""
    store = BoxStore(make_paths(Path(data)))
    box_id = new_box_id()
    store.create_dir(box_id)
    barrier.wait()
    try:
        store.reserve_name(name, box_id)
        results.put(("won", box_id))
    except Conflict:
        results.put(("conflict", box_id))
    except Exception as e:
        results.put((f"error: {type(e).__name__}: {e}", box_id))


def _race(store: BoxStore, name: str, n: int) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [ctx.Process(target=_reserve_worker,
                         args=(str(store.paths.data), name, barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    out = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return out


def test_exactly_one_of_many_processes_reserves_a_name(store: BoxStore) -> None:
    outcomes = _race(store, "contested", 6)
    winners = [box_id for what, box_id in outcomes if what == "won"]
    assert sorted(what for what, _ in outcomes) == ["conflict"] * 5 + ["won"]
    assert os.readlink(store.names / "contested") == winners[0]


def test_exactly_one_reclaims_a_stale_reservation(store: BoxStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two reservers find the same stale link; only one of them may end up with it.

    The window between reading the stale owner and acting on it is widened, and more
    for the second reader, so that the first one has re-reserved the name before the
    second one acts on what it read.
    """
    stale = new_box_id()
    store.names.mkdir(parents=True, exist_ok=True)
    os.symlink(stale, store.names / "web")
    real_readlink = os.readlink
    stale_reads = []

    def slow_readlink(path: Any) -> str:
        target = real_readlink(path)
        if target == stale:
            stale_reads.append(target)
            time.sleep(0.05 + 0.4 * (len(stale_reads) - 1))
        return target

    monkeypatch.setattr(boxes_module.os, "readlink", slow_readlink)
    ids = [new_box_id(), new_box_id()]
    for box_id in ids:
        store.create_dir(box_id)
    outcomes: dict[str, str] = {}
    start = threading.Barrier(2)

    def reserve(box_id: str) -> None:
        start.wait()
        try:
            store.reserve_name("web", box_id)
            outcomes[box_id] = "won"
        except Conflict:
            outcomes[box_id] = "conflict"

    threads = [threading.Thread(target=reserve, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes.values()) == ["conflict", "won"]
    winner = next(i for i, what in outcomes.items() if what == "won")
    assert real_readlink(store.names / "web") == winner


# resolving ids and names -------------------------------------------------------------------

def test_resolve_full_id_name_and_unique_prefix(store: BoxStore) -> None:
    a = add_box(store, box_id="abc1" + "0" * 60, name="alpha")
    b = add_box(store, box_id="abd2" + "0" * 60, name="beta")
    assert store.resolve(a.id) == a.id
    assert store.resolve("alpha") == a.id
    assert store.resolve("beta") == b.id
    assert store.resolve("abc") == a.id
    assert store.resolve("abd2") == b.id


def test_ambiguous_prefix_is_a_conflict(store: BoxStore) -> None:
    add_box(store, box_id="abc1" + "0" * 60)
    add_box(store, box_id="abc2" + "0" * 60)
    with pytest.raises(Conflict, match="ambiguous"):
        store.resolve("ab")


@pytest.mark.parametrize("ref", ["nothing", "fff", "abc1" + "0" * 61, "ABC1"])
def test_unknown_box_is_not_found(store: BoxStore, ref: str) -> None:
    add_box(store, box_id="abc1" + "0" * 60)
    with pytest.raises(NotFound, match="no such box"):
        store.resolve(ref)


def test_empty_reference_is_a_usage_error(store: BoxStore) -> None:
    with pytest.raises(UsageError):
        store.resolve("")


def test_exact_name_wins_over_an_id_prefix(store: BoxStore) -> None:
    # docker: a full id, then an exact name, then an id prefix.
    prefixed = add_box(store, box_id="beef" + "0" * 60, name="other")
    named = add_box(store, box_id="cafe" + "0" * 60, name="beef")
    assert store.resolve("beef") == named.id
    assert store.resolve("bee") == prefixed.id


def test_name_of_a_removed_box_does_not_resolve(store: BoxStore) -> None:
    box = add_box(store, name="ghost")
    store.remove_dir(box.id)
    with pytest.raises(NotFound):
        store.resolve("ghost")


# box directories and state ----------------------------------------------------------------

def test_state_round_trip(store: BoxStore) -> None:
    state = add_box(store, name="rt", status=Status.RUNNING)
    state.exit_code = 3
    state.creator = ProcessRecord.current().to_json()
    with store.lock(state.id):
        store.write(state)
    assert store.read(state.id) == state
    assert stat.S_IMODE((store.box_dir(state.id) / "state.json").stat().st_mode) == 0o600


def test_box_directory_is_private(store: BoxStore) -> None:
    box = add_box(store)
    assert stat.S_IMODE(store.box_dir(box.id).stat().st_mode) & 0o077 == 0


def test_remove_dir_leaves_nothing(store: BoxStore) -> None:
    box = add_box(store)
    d = store.box_dir(box.id)
    (d / "disks" / "rootfs.qcow2").write_bytes(b"q" * 4096)
    (d / "ro").mkdir()
    (d / "ro" / "f").write_text("x")
    os.chmod(d / "ro" / "f", 0o400)
    os.chmod(d / "ro", 0o500)
    os.symlink("/etc", d / "link-out")
    store.remove_dir(box.id)
    assert not d.exists()
    assert box.id not in store.ids()
    leftovers = [p for p in store.paths.data.rglob("*") if box.id in str(p)]
    assert leftovers == []
    assert Path("/etc/passwd").exists()  # the symlink was removed, not followed
    store.remove_dir(box.id)  # removing again is a no-op


def test_what_a_killed_removal_left_goes_with_the_next_one(store: BoxStore) -> None:
    """rm renames a box into the trash, then deletes it; one killed in between left its
    disks there for good (nothing read the trash)."""
    killed = store.paths.data / "trash" / new_box_id()
    (killed / "disks").mkdir(parents=True)
    (killed / "disks" / "rootfs.qcow2").write_bytes(b"q" * 4096)
    store.remove_dir(add_box(store).id)
    assert list((store.paths.data / "trash").iterdir()) == []
    again = add_box(store)  # one whose own removal was killed: its id is in the trash
    (store.paths.data / "trash" / again.id / "disks").mkdir(parents=True)
    store.remove_dir(again.id)
    assert list((store.paths.data / "trash").iterdir()) == []
    assert again.id not in store.ids()


def test_read_of_missing_box_is_not_found(store: BoxStore) -> None:
    with pytest.raises(NotFound):
        store.read(new_box_id())


CORRUPT = {
    "empty": b"",
    "truncated": b'{"id": "abc", "name": "x", "config": {"ima',
    "not an object": b"[1, 2, 3]",
    "null": b"null",
    "binary": b"\x00\xff\xfe garbage",
    "missing config": b'{"id": "a", "name": "b"}',
    "bad status": None,  # filled from a valid state below
    "config not a dict": b'{"id": "a", "name": "b", "config": 7, "status": "created"}',
    "unknown config key": None,
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_state_file_is_state_corrupt_naming_the_file(store: BoxStore, kind: str) -> None:
    box = add_box(store)
    path = store.box_dir(box.id) / "state.json"
    content = CORRUPT[kind]
    if content is None:
        data = json.loads(path.read_text())
        if kind == "bad status":
            data["status"] = "levitating"
        else:
            data["config"]["surprise"] = 1
        content = json.dumps(data).encode()
    path.write_bytes(content)
    with pytest.raises(StateCorrupt) as info:
        store.read(box.id)
    assert str(path) in info.value.message
    assert info.value.hint and box.id[:12] in info.value.hint
    with pytest.raises(StateCorrupt):
        load_state(path)


def test_listing_reports_corrupt_boxes_and_keeps_going(store: BoxStore) -> None:
    good = add_box(store, box_id="1" * 64)
    bad = add_box(store, box_id="2" * 64)
    (store.box_dir(bad.id) / "state.json").write_text("{")
    store.create_dir("3" * 64)  # still being made: no state.json yet
    items = list(store.all())
    assert len(items) == 2
    assert items[0] == good
    assert isinstance(items[1], StateCorrupt)
    assert str(store.box_dir(bad.id) / "state.json") in items[1].message


# the runtime's view of dead boxes --------------------------------------------------------

def test_running_box_without_a_live_shim_shows_as_exited(store: BoxStore) -> None:
    rt = Runtime(store.paths)
    no_pidfile = add_box(rt.boxes, name="nopid", status=Status.RUNNING)
    reused = add_box(rt.boxes, name="reused", status=Status.RUNNING)
    me = ProcessRecord.current()
    write_pidfile(rt.files(reused.id).shim_pid, ProcessRecord(me.pid, me.start_time + 7))
    alive = add_box(rt.boxes, name="alive", status=Status.RUNNING)
    write_pidfile(rt.files(alive.id).shim_pid, me)
    for ref in ("nopid", "reused"):
        state = rt.get(ref)
        assert state.status == Status.EXITED
        assert state.error and "shim" in state.error
    assert rt.get("alive").status == Status.RUNNING
    # Observing does not rewrite the state file.
    assert rt.boxes.read(no_pidfile.id).status == Status.RUNNING


def test_a_box_whose_shim_died_finished_when_its_run_last_wrote(store: BoxStore) -> None:
    """Not when its state was last written (its start): `ps` said "Exited ... ago" from
    then, and FinishedAt came before its own log lines."""
    import os

    rt = Runtime(store.paths)
    box = add_box(rt.boxes, name="dead", status=Status.RUNNING)
    files = rt.files(box.id)
    os.utime(files.state, (1000.0, 1000.0))
    files.container_log.write_bytes(b"")
    os.utime(files.container_log, (1500.0, 1500.0))
    assert rt.get("dead").finished_at == 1500.0
    assert rt.get("dead").exit_code == 137
    with rt.boxes.lock(box.id):  # (a quiet run wrote nothing since its start: not before it)
        state = rt.boxes.read(box.id)
        state.started_at = 2000.0
        rt.boxes.write(state)
    os.utime(files.state, (1999.9, 1999.9))
    assert rt.get("dead").finished_at == 2000.0



def test_a_box_whose_shim_died_is_not_given_its_last_runs_end(store: BoxStore) -> None:
    """A running box keeps the FinishedAt of its run before (docker's); a shim that died
    in this run ended it after its start, not then."""
    import os

    rt = Runtime(store.paths)
    box = add_box(rt.boxes, name="dead", status=Status.RUNNING)
    with rt.boxes.lock(box.id):
        state = rt.boxes.read(box.id)
        state.started_at, state.finished_at = 1200.0, 1100.0
        rt.boxes.write(state)
    files = rt.files(box.id)
    os.utime(files.state, (1200.0, 1200.0))
    files.container_log.write_bytes(b"")
    os.utime(files.container_log, (1700.0, 1700.0))
    assert rt.get("dead").finished_at == 1700.0


def test_a_warm_start_that_lost_its_host_port_keeps_the_template(
        store: BoxStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Another box took the fixed host port between our check and QEMU's bind (QEMU
    exits, the warm start fails): that is the port's failure, not the template's."""
    import socket

    from boxlite_cli.runtime.runtime import WarmStartFailed
    from boxlite_cli.state.network import NetworkConfig, PortMapping

    rt = Runtime(store.paths)
    state = add_box(rt.boxes, name="web")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    state.config.network = NetworkConfig(ports=[PortMapping(
        8000, "tcp", "127.0.0.1", taken.getsockname()[1])])
    with rt.boxes.lock(state.id):
        rt.boxes.write(state)
    template = tmp_path / "template"
    template.mkdir()
    tries: list[bool] = []

    def lost_the_port(ref: str, foreground: bool, cold: bool, **_: Any) -> Any:
        tries.append(cold)
        raise WarmStartFailed("cannot reach QMP: Connection refused", template)

    monkeypatch.setattr(rt, "_start", lost_the_port)
    with taken, pytest.raises(Conflict, match="the host port is already in use"):
        rt.start("web")
    assert template.is_dir() and tries == [False]  # kept, and no cold retry


def test_interrupted_create_shows_as_exited(store: BoxStore) -> None:
    rt = Runtime(store.paths)
    state = add_box(rt.boxes, name="half", status=Status.CREATING)
    state.creator = {"pid": os.getpid(), "start_time": ProcessRecord.current().start_time + 1}
    rt.boxes.write(state)
    observed = rt.get("half")
    assert observed.status == Status.EXITED
    assert observed.exit_code == 125


# paths --------------------------------------------------------------------------------------

def test_boxlite_home_puts_everything_in_one_place(home: Path) -> None:
    paths = home_paths()
    assert paths.data == home
    assert paths.config.is_relative_to(home) and paths.cache.is_relative_to(home)
    assert paths.box_dir("x") == home / "boxes" / "x"


def test_without_a_home_the_xdg_base_directories_are_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from boxlite_cli.state.paths import payload_cache

    monkeypatch.delenv("BOXLITE_HOME", raising=False)
    monkeypatch.delenv("BOXLITE_PAYLOAD_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    assert home_paths() == Paths(data=tmp_path / ".local/share/boxlite",
                                 config=tmp_path / ".config/boxlite",
                                 cache=tmp_path / ".cache/boxlite")
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data")
    monkeypatch.setenv("XDG_CACHE_HOME", "/srv/cache")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/config")  # not absolute: ignored (the spec)
    assert home_paths() == Paths(data=Path("/srv/data/boxlite"),
                                 config=tmp_path / ".config/boxlite",
                                 cache=Path("/srv/cache/boxlite"))
    assert payload_cache() == Path("/srv/cache/boxlite/payload")


def test_socket_paths_fit_in_sun_path(tmp_path: Path) -> None:
    short = tmp_path / "b"
    assert socket_dir(short) == short / "run"
    deep = tmp_path.joinpath(*(["d" * 50] * 4))
    sockets = socket_dir(deep)
    assert len(str(sockets / "console.sock").encode()) <= 107
    assert socket_dir(deep) == sockets  # stable
    assert socket_dir(deep / "other") != sockets


# removal under the box's lock ---------------------------------------------------------------


def test_a_removed_boxs_lock_is_no_such_box_and_makes_no_directory(store: BoxStore) -> None:
    state = add_box(store, name="gone")
    store.remove_dir(state.id)
    with pytest.raises(NoSuchBox), store.lock(state.id):
        pass
    assert not store.box_dir(state.id).exists()  # (a lock used to make it again, empty)


def test_a_box_held_too_long_by_another_command_is_busy(store: BoxStore) -> None:
    state = add_box(store, name="held")
    with store.lock(state.id), pytest.raises(Conflict, match="is busy"):
        store.lock(state.id, timeout=0.05).acquire()  # (another open file: excluded)


def test_rm_refuses_a_box_that_runs_and_leaves_it(store: BoxStore) -> None:
    rt = Runtime(store.paths)
    state = add_box(rt.boxes, name="up", status=Status.RUNNING)
    write_pidfile(rt.files(state.id).shim_pid, ProcessRecord.current())
    with pytest.raises(Conflict, match="cannot remove running box up"):
        rt.remove("up")
    assert rt.get("up").status == Status.RUNNING


def test_rm_force_stops_a_box_started_again_before_it_took_the_lock(
        store: BoxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another shell starts the box between rm -f's kill and its lock: rm stops it
    again, rather than removing the directory of a running VM."""
    rt = Runtime(store.paths)
    state = add_box(rt.boxes, name="flip", status=Status.EXITED)
    kills: list[str] = []

    def kill_now(box_id: str) -> None:
        kills.append(box_id)
        with rt.boxes.lock(box_id):
            s = rt.boxes.read(box_id)
            if len(kills) == 1:  # a `start` right after our kill
                s.status = Status.RUNNING
                write_pidfile(rt.files(box_id).shim_pid, ProcessRecord.current())
            else:  # killed this time
                s.status = Status.EXITED
                rt.files(box_id).shim_pid.unlink()
            rt.boxes.write(s)

    monkeypatch.setattr(rt, "kill_now", kill_now)
    assert rt.remove("flip", force=True) == state.id
    assert kills == [state.id, state.id]
    assert not rt.boxes.box_dir(state.id).exists()
    with pytest.raises(NotFound):
        rt.resolve("flip")


def _auto_removed_shim(store: BoxStore) -> tuple[Any, BoxState]:
    from boxlite_cli.shim.main import Shim
    from boxlite_cli.shim.vmspec import Launch
    from boxlite_cli.state.boxfiles import BoxFiles
    from boxlite_cli.vmm.base import VmSpec

    state = add_box(store, name="rmme", status=Status.EXITED)
    state.config.auto_remove = True
    with store.lock(state.id):
        store.write(state)
    files = BoxFiles(store.box_dir(state.id))
    d = files.dir
    Launch(driver="qemu", boot_timeout_s=30, vm=VmSpec(
        kernel=d / "k", initrd=d / "i", agent_root=d / "a", rootfs_disk=d / "r",
        console_log=files.console_log, agent_socket=d / "vm.sock",
        control_socket=d / "qmp.sock")).save(d / "vm.json")
    return Shim(files, ready_fd=-1), state


def test_an_auto_removed_box_goes_with_its_vm(store: BoxStore) -> None:
    shim, state = _auto_removed_shim(store)
    shim.remove_if_auto(state)
    assert not store.box_dir(state.id).exists()
    assert not (store.names / "rmme").is_symlink()


def test_an_auto_removed_box_started_again_meanwhile_is_kept(store: BoxStore) -> None:
    """`start` from another shell between the VM's end and the removal owns the box."""
    shim, state = _auto_removed_shim(store)
    with store.lock(state.id):
        again = store.read(state.id)
        again.status = Status.STARTING
        store.write(again)
    shim.remove_if_auto(state)
    assert store.read(state.id).status == Status.STARTING
    assert os.readlink(store.names / "rmme") == state.id


def test_a_start_whose_shim_was_signalled_was_stopped_not_broken(
        store: BoxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shim that ends without a word during start: a failure of the VM (retried cold,
    the template discarded) unless a stop, kill or rm -f signalled it."""
    from boxlite_cli.errors import VmError
    from boxlite_cli.runtime import runtime as runtime_module

    rt = Runtime(store.paths)
    state = add_box(rt.boxes, name="st", status=Status.STARTING)
    files = rt.files(state.id)
    monkeypatch.setattr(runtime_module, "launch_shim", lambda *_: None)  # says nothing
    with pytest.raises(VmError, match="shim exited during start"):
        rt._spawn_shim(state, files)
    write_pidfile(files.shim_pid, ProcessRecord.current())
    monkeypatch.setattr(os, "kill", lambda pid, sig: None)
    rt._kill_shim(files)  # as stop and rm -f do
    assert files.stop_requested.exists()
    with pytest.raises(Conflict, match="box st was stopped while it was starting"):
        rt._spawn_shim(state, files)


def test_a_warm_start_of_a_box_removed_meanwhile_keeps_the_template(
        store: BoxStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from boxlite_cli.runtime.runtime import WarmStartFailed

    rt = Runtime(store.paths)
    state = add_box(rt.boxes, name="gone-soon")
    template = tmp_path / "template"
    template.mkdir()

    def removed_meanwhile(ref: str, foreground: bool, cold: bool, **_: Any) -> Any:
        rt.boxes.remove_dir(state.id)  # an rm -f from another shell
        raise WarmStartFailed("the box's shim exited during start", template)

    monkeypatch.setattr(rt, "_start", removed_meanwhile)
    with pytest.raises(NoSuchBox, match="was removed while it was starting"):
        rt.start(state.id)
    assert template.is_dir()  # not discarded, and no cold start


def test_rm_force_of_a_running_auto_removed_box_is_done_when_its_shim_removed_it(
        store: BoxStore, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = Runtime(store.paths)
    state = add_box(rt.boxes, name="rmrun", status=Status.RUNNING)
    write_pidfile(rt.files(state.id).shim_pid, ProcessRecord.current())

    def shim_removes_it(box_id: str) -> None:  # as a --rm box's shim does once its VM is down
        rt.boxes.remove_dir(box_id)
        rt.boxes.release_name("rmrun", box_id)

    monkeypatch.setattr(rt, "kill_now", shim_removes_it)
    assert rt.remove("rmrun", force=True) == state.id
    assert not rt.boxes.box_dir(state.id).exists()


def test_an_auto_removed_box_takes_its_anonymous_volumes_only(store: BoxStore) -> None:
    from boxlite_cli.state.volumes import VOLUME, Mount, VolumeStore

    volumes = VolumeStore(store.paths.data / "volumes")
    with volumes.lock():
        volumes.create("a" * 64, anonymous=True)
        volumes.create("named")
        volumes.create("b" * 64, anonymous=True)  # another box's (a clone's) as well
    other = add_box(store, name="other")
    other.config.mounts = [Mount(VOLUME, "b" * 64, "/b", anonymous=True)]
    with store.lock(other.id):
        store.write(other)
    shim, state = _auto_removed_shim(store)
    state.config.mounts = [Mount(VOLUME, "a" * 64, "/a", anonymous=True),
                           Mount(VOLUME, "named", "/n"),
                           Mount(VOLUME, "b" * 64, "/b", anonymous=True)]
    shim.remove_if_auto(state)
    assert sorted(v.name for v in volumes.all()) == ["b" * 64, "named"]


def test_the_shared_socket_base_must_be_private(tmp_path: Path) -> None:
    """/tmp/bl-UID (or XDG_RUNTIME_DIR) holds boxes' sockets when their paths are long:
    made 0700, and refused when another could enter it (or it is a link)."""
    from boxlite_cli.errors import BoxliteError
    from boxlite_cli.state.paths import ensure_private_socket_base

    base = tmp_path / "bl-0"
    ensure_private_socket_base(base / "abc")
    assert base.is_dir() and (base.stat().st_mode & 0o777) == 0o700
    ensure_private_socket_base(tmp_path / "box" / "run")  # (inside a box: not checked)
    base.chmod(0o755)  # (as an older boxlite made it: closed now)
    ensure_private_socket_base(base / "abc")
    assert (base.stat().st_mode & 0o777) == 0o700
    base.chmod(0o777)
    with pytest.raises(BoxliteError, match="is not a private directory"):
        ensure_private_socket_base(base / "abc")
    link = tmp_path / "bl-link"
    link.symlink_to(base)
    base.chmod(0o700)
    with pytest.raises(BoxliteError, match="is not a private directory"):
        ensure_private_socket_base(link / "abc")


def test_stats_of_a_box_whose_vm_ends_while_it_is_sampled_is_a_conflict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(stats --no-stream then leaves it out, instead of a raw /proc error and 125.)"""
    from boxlite_cli.runtime import runtime as runtime_module

    rt = Runtime(Paths(data=tmp_path, config=tmp_path / "config", cache=tmp_path / "cache"))
    state = BoxState(id="b" * 64, name="ending", status=Status.RUNNING,
                     config=BoxConfig(image="i", image_id="sha256:" + "a" * 64, rootfs_base="",
                                      process=ProcessSpec(argv=["true"])))
    monkeypatch.setattr(rt, "get", lambda ref: state)
    monkeypatch.setattr(runtime_module, "read_pidfile", lambda path: ProcessRecord.current())

    def gone(pid: int, interval_s: float) -> None:
        raise FileNotFoundError(2, "No such file or directory", f"/proc/{pid}/stat")

    monkeypatch.setattr(runtime_module, "sample_process", gone)
    with pytest.raises(Conflict, match="box ending stopped while it was sampled"):
        rt.stats("ending")
