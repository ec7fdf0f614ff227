"""`-v` end to end: virtio-9p binds of directories and single files, read-only
mounts, named and anonymous volumes, `volume` commands, and bad specs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from boxlite_cli.shim.vmspec import Launch
from tests.e2e.conftest import IMAGE, bx

pytestmark = pytest.mark.e2e


def test_nine_volumes_rw_ro_files_named_and_anonymous(tmp_path: Path) -> None:
    dirs = []
    for i in range(6):
        d = tmp_path / f"d{i}"
        d.mkdir()
        (d / "f").write_text(str(i))
        dirs.append(d)
    (tmp_path / "single.conf").write_text("single")
    (tmp_path / "other-file").write_text("not shared")
    args = [a for i, d in enumerate(dirs[:5]) for a in ("-v", f"{d}:/m/d{i}")]
    args += ["-v", f"{dirs[5]}:/m/ro:ro", "-v", f"{tmp_path / 'single.conf'}:/etc/single.conf:ro",
             "-v", "e2e-named:/named", "-v", "/anon"]
    script = (
        "cat /m/d0/f /m/d1/f /m/d2/f /m/d3/f /m/d4/f /m/ro/f /etc/single.conf; echo;"
        "echo written > /m/d0/new; mkdir /m/d1/sub; echo deep > /m/d1/sub/x;"
        "echo nope > /m/ro/new 2>/dev/null && echo RO-WRITABLE;"
        "echo nope >> /etc/single.conf 2>/dev/null && echo FILE-WRITABLE;"
        "touch /m/ro/f 2>&1 | grep -q 'Read-only' && echo ro-enforced;"
        "ls /etc | grep -c other-file;"
        "echo kept > /named/n; echo anon > /anon/a"
    )
    proc = bx("run", "--name", "vols", *args, IMAGE, "sh", "-c", script)
    try:
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.decode().splitlines()
        assert lines[0] == "012345single"
        assert "RO-WRITABLE" not in lines and "FILE-WRITABLE" not in lines
        assert "ro-enforced" in lines
        assert lines[-1] == "0"  # the single file's neighbours are not in the box
        new = dirs[0] / "new"
        assert new.read_text() == "written\n"
        st = new.stat()
        # mapped-xattr: files the guest makes belong to the user running boxlite
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        assert (dirs[1] / "sub" / "x").read_text() == "deep\n"
        assert sorted(os.listdir(dirs[5])) == ["f"]
        assert (tmp_path / "single.conf").read_text() == "single"
        volumes = json.loads(bx("volume", "ls", "--format", "json").stdout)
        named = next(v for v in volumes if v["name"] == "e2e-named")
        assert (Path(named["mountpoint"]) / "n").read_text() == "kept\n"
        anon = [v for v in volumes if v["anonymous"]]
        assert any((Path(v["mountpoint"]) / "a").is_file() for v in anon)
        # in use: refused, box and volume unchanged
        busy = bx("volume", "rm", "e2e-named")
        assert busy.returncode == 125 and b"in use by box vols" in busy.stderr
        # the data survives a restart of the box, and cp sees volume contents
        out = tmp_path / "out"
        cp = bx("cp", "vols:/named/n", str(out))
        assert cp.returncode == 0, cp.stderr
        assert out.read_text() == "kept\n"
        # a memory checkpoint cannot carry 9p volumes: refused up front (QEMU would
        # refuse the migration and leave the VM paused)
        refused = bx("snapshot", "create", "--memory", "vols", "m")
        assert refused.returncode == 125 and b"has volumes" in refused.stderr, refused.stderr
        assert b"boxlite snapshot create vols m" in refused.stderr  # the hint
        assert json.loads(bx("snapshot", "ls", "--format", "json", "vols").stdout) == []
    finally:
        bx("rm", "-v", "-f", "vols")
    after = {v["name"] for v in json.loads(bx("volume", "ls", "--format", "json").stdout)}
    assert "e2e-named" in after  # named volumes stay
    assert not any(v["anonymous"] and (Path(v["mountpoint"]) / "a").is_file()
                   for v in json.loads(bx("volume", "ls", "--format", "json").stdout))
    assert bx("volume", "rm", "e2e-named").returncode == 0


def test_named_volume_shared_between_runs() -> None:
    assert bx("volume", "create", "e2e-share").stdout.strip() == b"e2e-share"
    try:
        first = bx("run", "--rm", "-v", "e2e-share:/data", IMAGE, "sh", "-c", "echo 1 > /data/x")
        assert first.returncode == 0, first.stderr
        second = bx("run", "--rm", "-v", "e2e-share:/data:ro", IMAGE, "cat", "/data/x")
        assert second.stdout == b"1\n"
        inspect = json.loads(bx("volume", "inspect", "e2e-share").stdout)
        assert inspect[0]["name"] == "e2e-share"
        # --rm takes the box's anonymous volumes with it (docker's), never a named one
        before = set(bx("volume", "ls", "-q").stdout.split())
        both = bx("run", "--rm", "-v", "/anon", "-v", "e2e-share:/data", IMAGE,
                  "sh", "-c", "echo 2 > /anon/y && cat /data/x")
        assert (both.returncode, both.stdout) == (0, b"1\n"), both.stderr
        assert set(bx("volume", "ls", "-q").stdout.split()) == before
    finally:
        bx("volume", "rm", "e2e-share")


def test_an_empty_volume_is_filled_from_the_image_once(tmp_path: Path) -> None:
    """docker's rule: a volume still empty at start gets what the image has at its
    target (owners and modes too); one with content keeps it; a host path is never
    filled; nor a volume mounted with nocopy."""
    try:
        first = bx("run", "--rm", "-v", "e2e-apt:/etc/apt", "-v", "/etc/default",
                   "--mount", "src=e2e-skel,dst=/etc/skel,volume-nocopy", IMAGE, "sh",
                   "-c", "stat -c '%U %a' /etc/apt/sources.list.d; ls /etc/default | wc -l; "
                         "ls -A /etc/skel | wc -l; "
                         "rm -r /etc/apt/apt.conf.d; echo mine > /etc/apt/note")
        assert first.returncode == 0, first.stderr
        owner, count, skel = first.stdout.decode().split("\n")[:3]
        assert owner == "root 755" and int(count) > 0, first.stdout
        assert skel == "0", first.stdout
        again = bx("run", "--rm", "-v", "e2e-apt:/etc/apt", IMAGE, "sh", "-c",
                   "cat /etc/apt/note; ls /etc/apt | grep -c apt.conf.d")
        assert again.stdout == b"mine\n0\n", again.stdout  # not filled a second time
        host = tmp_path / "host"
        host.mkdir()
        bound = bx("run", "--rm", "-v", f"{host}:/etc/apt", IMAGE, "ls", "-A", "/etc/apt")
        assert (bound.returncode, bound.stdout) == (0, b"")
        assert list(host.iterdir()) == []
    finally:
        bx("volume", "rm", "e2e-apt", "e2e-skel")


def test_mount_takes_paths_with_colons_and_commas(tmp_path: Path) -> None:
    """What `-v` cannot say, `--mount` can: a ':' (and a quoted ',') in either path."""
    host = tmp_path / "a:b,c"
    host.mkdir()
    (host / "in").write_text("from host")
    (tmp_path / "one:file").write_text("single")
    proc = bx("run", "--rm", "--mount", f'type=bind,"src={host}",dst=/x:y',
              "--mount", f"type=bind,src={tmp_path / 'one:file'},dst=/etc/one:file,ro", IMAGE,
              "sh", "-c", "cat /x:y/in /etc/one:file; echo; echo out > /x:y/out")
    assert (proc.returncode, proc.stdout) == (0, b"from hostsingle\n"), proc.stderr
    assert (host / "out").read_text() == "out\n"


def test_a_missing_host_directory_of_v_is_made_as_dockers_is(tmp_path: Path) -> None:
    out = tmp_path / "build" / "out"
    proc = bx("run", "--rm", "-v", f"{out}:/out", IMAGE, "sh", "-c", "echo made > /out/f")
    assert proc.returncode == 0, proc.stderr
    assert (out / "f").read_text() == "made\n"
    refused = bx("run", "--rm", "--mount", f"type=bind,src={tmp_path / 'other'},dst=/x", IMAGE,
                 "true")  # (--mount does not make it, as docker's)
    assert refused.returncode == 125 and b"does not exist" in refused.stderr
    assert not (tmp_path / "other").exists()
    bx("create", "--name", "taken", IMAGE, "true")
    try:  # (a box refused for its name makes no directory)
        clash = bx("create", "--name", "taken", "-v", f"{tmp_path / 'clash'}:/x", IMAGE, "true")
        assert clash.returncode == 125 and b"already in use" in clash.stderr
        assert not (tmp_path / "clash").exists()
    finally:
        bx("rm", "-f", "taken")


@pytest.mark.parametrize(("spec", "needle"), [
    ("/proc/boxlite-no-such/x:/x", "is missing and cannot be made"),
    ("relative/dir:/x", "neither an absolute host path nor a volume name"),
    ("/tmp:relative", "not absolute"),
    ("/tmp:/x:rw:extra", "too many"),
    ("/tmp:/x:bad", "unknown option"),
    ("/tmp::ro", "empty part"),
    ("/tmp:/", "root directory"),
])
def test_bad_specs_leave_nothing(spec: str, needle: str) -> None:
    before = bx("ps", "-a", "-q").stdout
    vols = bx("volume", "ls", "-q").stdout
    proc = bx("run", "--rm", "-v", spec, IMAGE, "true")
    assert proc.returncode == 125
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith("boxlite: ") and needle in lines[0], proc.stderr
    assert bx("ps", "-a", "-q").stdout == before
    assert bx("volume", "ls", "-q").stdout == vols


def test_a_box_with_volumes_starts_warm(tmp_path: Path, e2e_home: Path) -> None:
    """A template is saved before the guest mounts anything, so boxes with volumes
    restore one too (keyed by their 9p devices, not their host paths); no spare serves
    them (its devices would share another box's paths)."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / "mark").write_text("b's")
    boxes = []
    try:
        for host in (first, second):
            run = bx("run", "-d", "-v", f"{host}:/w", IMAGE, "sleep", "600")
            assert run.returncode == 0, run.stderr
            boxes.append(run.stdout.decode().strip())
        launch = Launch.load(e2e_home / "boxes" / boxes[1] / "vm.json")
        assert launch.vm.restore_from, "the second box booted cold"
        assert [s.path for s in launch.vm.shares] == [str(second)]
        seen = bx("exec", boxes[1], "cat", "/w/mark")
        assert (seen.returncode, seen.stdout) == (0, b"b's"), seen.stderr
        assert not [p for p in (e2e_home / "spares").glob("*/vm.json")
                    if Launch.load(p).vm.shares]
    finally:
        bx("rm", "-f", *boxes)


def test_a_read_only_box_writes_only_to_its_tmpfs_mounts_and_volumes(tmp_path: Path) -> None:
    """docker's --read-only and --tmpfs: the root refuses writes; a tmpfs takes docker's
    options (and defaults: noexec, nosuid, nodev); a volume stays writable; -w's
    directory is made before the root turns read-only; so is it after a restart."""
    script = ("pwd; touch /x 2>&1 || true; echo t > /tmp/t && echo tmp-ok; echo v > /data/v;"
              " stat -c '%a %u' /run; grep -E ' /(tmp|run) ' /proc/self/mountinfo"
              " | cut -d' ' -f5,6")
    created = bx("create", "--name", "ro", "--read-only", "--tmpfs", "/tmp", "--tmpfs",
                 "/run:size=1m,mode=755,uid=1000,exec", "-v", f"{tmp_path}:/data",
                 "-w", "/newdir", IMAGE, "sleep", "600")
    try:
        assert created.returncode == 0, created.stderr
        assert bx("start", "ro").returncode == 0
        seen = bx("exec", "ro", "sh", "-c", script)
        assert seen.returncode == 0, seen.stderr
        assert seen.stdout.decode().splitlines() == [
            "/newdir",
            "touch: cannot touch '/x': Read-only file system",
            "tmp-ok",
            "755 1000",
            "/tmp rw,nosuid,nodev,noexec,relatime",
            "/run rw,nosuid,nodev,relatime",
        ]
        assert (tmp_path / "v").read_text() == "v\n"
        etc = bx("exec", "ro", "sh", "-c", "echo 1.1.1.1 >> /etc/resolv.conf")  # (docker's too)
        assert b"Read-only file system" in etc.stderr
        assert bx("restart", "-t", "0", "ro").returncode == 0  # (a new VM, set up again)
        again = bx("exec", "ro", "sh", "-c", "touch /y 2>&1; ls /tmp")
        assert again.stdout == b"touch: cannot touch '/y': Read-only file system\n"
        # stopped: cp's own VM keeps the root read-only; the volume takes the file
        assert bx("stop", "-t", "0", "ro").returncode == 0
        refused = bx("cp", str(tmp_path / "v"), "ro:/planted")
        assert refused.returncode == 125 and b"Read-only file system" in refused.stderr
        assert bx("cp", str(tmp_path / "v"), "ro:/data/copied").returncode == 0
        assert (tmp_path / "copied").read_text() == "v\n"
    finally:
        bx("rm", "-f", "ro")


def test_a_tmpfs_on_etc_keeps_the_boxs_hostname_hosts_and_resolv_conf() -> None:
    """docker mounts these three on top of the box's own mounts: a tmpfs on /etc hid them
    (no name resolution)."""
    seen = bx("run", "--rm", "-h", "tmpetc", "--tmpfs", "/etc", IMAGE, "sh", "-c",
              "cat /etc/hostname; ls /etc; getent hosts host.boxlite.internal | cut -c1-8")
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.decode().split() == ["tmpetc", "hostname", "hosts", "resolv.conf",
                                            "10.0.2.2"]


def test_volumes_take_the_boxs_etc_files_as_dockers_do(tmp_path: Path) -> None:
    """`-v` onto /etc/hosts, /etc/hostname or /etc/resolv.conf is what the box sees there
    (the box's own were bound on top: the user's file was ignored without a word); a
    volume on /etc still gets the box's hostname and hosts, and a file volume over it."""
    (tmp_path / "hosts").write_text("192.0.2.7 mine.example\n")
    (tmp_path / "hostname").write_text("from-the-host\n")
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.53\n")
    first = bx("run", "--rm", "-h", "boxa", "-v", f"{tmp_path / 'hosts'}:/etc/hosts:ro",
               "-v", f"{tmp_path / 'hostname'}:/etc/hostname", IMAGE, "sh", "-c",
               "cat /etc/hosts /etc/hostname; hostname; grep -c nameserver /etc/resolv.conf;"
               "echo x >> /etc/hosts 2>/dev/null || echo hosts-read-only")
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().splitlines() == [
        "192.0.2.7 mine.example", "from-the-host", "boxa", "1", "hosts-read-only"]
    second = bx("run", "--rm", "-h", "boxb", "-v", "e2e-etc:/etc",
                "-v", f"{tmp_path / 'resolv.conf'}:/etc/resolv.conf", IMAGE, "sh", "-c",
                "cat /etc/hostname /etc/resolv.conf; grep -c boxb /etc/hosts")
    try:
        assert second.returncode == 0, second.stderr
        assert second.stdout.decode().splitlines() == ["boxb", "nameserver 192.0.2.53", "1"]
        volume = json.loads(bx("volume", "inspect", "e2e-etc").stdout)[0]
        assert (Path(volume["Mountpoint"]) / "os-release").exists()  # (filled from the image)
    finally:
        bx("volume", "rm", "e2e-etc")
    assert (tmp_path / "hosts").read_text() == "192.0.2.7 mine.example\n"


def test_shm_size_makes_dev_shm_that_large() -> None:
    """docker's --shm-size (a browser's /dev/shm): the size asked, /dev/shm's flags and
    mode; 64 MiB without it; writable with --read-only too."""
    script = ("df -k /dev/shm | tail -1 | tr -s ' ' | cut -d' ' -f2; stat -c %a /dev/shm;"
              " head -c 100000000 /dev/zero 2>/dev/null > /dev/shm/big && echo fits || echo full;"
              " grep ' /dev/shm ' /proc/self/mountinfo | tail -1 | cut -d' ' -f6")
    # (100 MB: more than the default's room, less than 256 MiB)
    for args, seen_there in (([], ["65536", "1777", "full"]),
                             (["--shm-size", "256m", "--read-only"], ["262144", "1777", "fits"]),
                             # (a --tmpfs of it wins, as docker's: its size, mode, owner)
                             (["--shm-size", "1g", "--tmpfs", "/dev/shm:size=1m,mode=1770"],
                              ["1024", "1770", "full"])):
        seen = bx("run", "--rm", *args, IMAGE, "sh", "-c", script)
        assert seen.returncode == 0, seen.stderr
        assert seen.stdout.decode().splitlines() == [*seen_there, "rw,nosuid,nodev,noexec,relatime"]


@pytest.mark.parametrize("memory", ["256m", "128m"])
def test_filling_a_dev_shm_larger_than_the_ram_kills_the_writer_not_the_guest(
        memory: str) -> None:
    """tmpfs pages are the box's memory: its group is limited below the guest's RAM, so
    a process of the box is OOM-killed (the writer, or its shell: the kernel picks) and
    the box ends as docker's would (137, OOMKilled); the guest kernel deadlocked ("System
    is deadlocked on memory", exit 125 minutes later). A 128m VM has ~21 MiB for the
    box: a limit above that never bound."""
    try:
        seen = bx("run", "--name", "shm-full", "-m", memory, "--shm-size", "1g", IMAGE, "sh",
                  "-c", "head -c 400000000 /dev/zero > /dev/shm/big; echo writer $?",
                  timeout=300)
        assert (seen.returncode, seen.stdout) in ((0, b"writer 137\n"), (137, b"")), seen.stderr
        assert bx("inspect", "-f", "{{.State.OOMKilled}}", "shm-full").stdout == b"true\n"
    finally:
        bx("rm", "-f", "shm-full")
