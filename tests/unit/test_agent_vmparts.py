"""The VM-only parts, exercised on the host: container mounts (in a private mount
namespace), the mount table parser, disk lookup on a fake sysfs, the entropy ioctl
argument, the virtio port lookup, and PID 1's reaping."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

AGENT_DIR = str(Path(__file__).resolve().parents[2] / "guest-agent")
sys.path.insert(0, AGENT_DIR)

from boxlite_agent import containerfs, syscalls  # noqa: E402
from boxlite_agent.blockdev import find_disk, list_disks  # noqa: E402
from boxlite_agent.channels import find_port  # noqa: E402
from boxlite_agent.entropy import rand_pool_info  # noqa: E402
from boxlite_agent.errors import FailedPrecondition, InvalidArgument  # noqa: E402
from boxlite_agent.mounts import parse_mountinfo  # noqa: E402

MOUNT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {agent_dir!r})
    from boxlite_agent import syscalls
    from boxlite_agent.containerfs import (mount_kernel_filesystems, provide_etc_files,
                                           read_only_proc_paths)
    from boxlite_agent.mounts import read_mountinfo
    from boxlite_agent.netconf import NetSetup
    from boxlite_agent.ptys import open_pty

    base = {base!r}
    root = os.path.join(base, "root")
    etc = os.path.join(base, "etc")
    syscalls.mount("tmpfs", base, "tmpfs", 0, "mode=755")
    os.makedirs(root + "/etc")
    os.symlink("/etc/hosts.real", root + "/etc/hosts")  # the image's hosts is a link
    for _ in range(2):                                   # Init twice: nothing mounted twice
        mount_kernel_filesystems(root)
        read_only_proc_paths(root)
        provide_etc_files(root, "box1", etc)
    net = NetSetup("nat", "10.0.2.15/24", "10.0.2.2", ("10.0.2.3",),
                   (("host.boxlite.internal", "10.0.2.2"), ("db", "192.0.2.7")))
    provide_etc_files(root, "box2", etc, net=net)        # a new hostname, same mounts
    looped = os.path.join(base, "looped")                # an image whose hostname loops:
    os.makedirs(looped + "/etc")                         # left be, the others provided
    os.symlink("/etc/hostname", looped + "/etc/hostname")
    provide_etc_files(looped, "box3", os.path.join(base, "etc3"))
    master, slave = open_pty(root)
    result = {{
        "mounts": [(m.mount_point[len(root):] or "/", m.fstype)
                   for m in read_mountinfo() if m.mount_point.startswith(root)],
        "dev": sorted(os.listdir(root + "/dev")),
        "links": {{n: os.readlink(root + "/dev/" + n)
                   for n in ("ptmx", "fd", "stdin", "stdout", "stderr")}},
        "null_mode": oct(os.stat(root + "/dev/null").st_mode),
        "hosts": open(root + "/etc/hosts.real").read(),
        "hostname": open(root + "/etc/hostname").read(),
        "resolv": open(root + "/etc/resolv.conf").read(),
        "tty": os.readlink(f"/proc/self/fd/{{slave}}"),
        "devpts_mine": os.path.exists(root + "/dev/pts/0"),
        "sys_opts": [l.split()[3] for l in open("/proc/self/mounts") if root + "/sys " in l],
        "cgroup_opts": [l.split()[3] for l in open("/proc/self/mounts")
                        if root + "/sys/fs/cgroup " in l],
        "proc_sys_opts": [l.split()[3] for l in open("/proc/self/mounts")
                          if root + "/proc/sys " in l],
        "read_only_proc": {{n: [l.split()[3] for l in open("/proc/self/mounts")
                               if l.split()[1] == root + "/proc/" + n]
                           for n in ("bus", "fs", "irq", "sysrq-trigger")
                           if os.path.exists(root + "/proc/" + n)}},
        "looped_hosts": open(looped + "/etc/hosts").read().splitlines()[-1],
        "looped_link": os.readlink(looped + "/etc/hostname"),
    }}
    print(json.dumps(result))
    """
)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root")
def test_container_mounts_in_a_private_namespace(tmp_path: Path) -> None:
    base = tmp_path / "ns"
    base.mkdir()
    script = MOUNT_SCRIPT.format(agent_dir=AGENT_DIR, base=str(base))
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.skip(f"no mount namespaces here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    cgroup = [["/sys/fs/cgroup", "cgroup2"]] if r["cgroup_opts"] else []  # (a cgroup v2 host)
    assert r["mounts"] == [
        ["/proc", "proc"],
        ["/sys", "sysfs"],
        ["/dev", "tmpfs"],
        ["/dev/pts", "devpts"],
        ["/dev/shm", "tmpfs"],
        *cgroup,
        # (read-only, as runc makes them: those this host's kernel has)
        *[[f"/proc/{n}", "proc"] for n in ("bus", "fs", "irq", "sys", "sysrq-trigger")
          if n in r["read_only_proc"] or n == "sys"],
        ["/etc/hostname", "tmpfs"],
        ["/etc/hosts.real", "tmpfs"],
        ["/etc/resolv.conf", "tmpfs"],
    ]
    assert r["dev"] == [
        "fd", "full", "null", "ptmx", "pts", "random", "shm",
        "stderr", "stdin", "stdout", "tty", "urandom", "zero",
    ]  # fmt: skip
    assert r["links"] == {
        "ptmx": "pts/ptmx",
        "fd": "/proc/self/fd",
        "stdin": "/proc/self/fd/0",
        "stdout": "/proc/self/fd/1",
        "stderr": "/proc/self/fd/2",
    }
    assert r["null_mode"] == "0o20666"
    hosts = r["hosts"].splitlines()
    assert hosts[:2] == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    assert hosts[-3:] == ["10.0.2.2\thost.boxlite.internal", "192.0.2.7\tdb", "10.0.2.15\tbox2"]
    assert r["resolv"] == "nameserver 10.0.2.3\n"
    assert (r["looped_hosts"], r["looped_link"]) == ("127.0.1.1\tbox3", "/etc/hostname")
    assert r["hostname"] == "box2\n"
    assert r["tty"] == str(base / "root/dev/pts/0")  # allocated in the container's devpts
    assert r["devpts_mine"]
    assert r["sys_opts"][0].startswith("ro,")
    assert all(opts.startswith("ro,") for opts in r["cgroup_opts"])
    assert r["proc_sys_opts"] and all(o.startswith("ro,") for o in r["proc_sys_opts"])
    assert r["read_only_proc"], "this host's proc has none of bus, fs, irq, sysrq-trigger"
    for name, opts in r["read_only_proc"].items():
        assert opts and all(o.startswith("ro,") for o in opts), name
    assert not (base / "root").exists()  # all of it stayed in the namespace


class FakeMounts:
    """mount(2) recorded, not made: the calls, and what is mounted since."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, str, str | None, int, str | None]] = []
        self.mounted: set[str] = set()

    def mount(self, src: str | None, dst: str, fs: str | None, flags: int,
              data: str | None) -> None:
        self.calls.append((src, dst, fs, flags, data))
        self.mounted.add(dst)


def test_mount_plan_with_fake_syscalls(tmp_path: Path) -> None:
    fake = FakeMounts()
    calls, mounted, fake_mount = fake.calls, fake.mounted, fake.mount
    root = tmp_path / "root"
    root.mkdir()
    for _ in range(2):
        containerfs.mount_kernel_filesystems(str(root), fake_mount, mounted.__contains__)
    assert [c[2] for c in calls] == ["proc", "sysfs", "tmpfs", "devpts", "tmpfs"]
    assert calls[3][4] == "newinstance,ptmxmode=0666,mode=620,gid=5"
    assert (root / "dev/null").exists() and os.readlink(root / "dev/ptmx") == "pts/ptmx"
    # (a fake sysfs: its /sys/fs/cgroup gets the cgroup file system, read-only)
    (root / "sys/fs/cgroup").mkdir(parents=True)
    calls.clear()
    containerfs.mount_kernel_filesystems(str(root), fake_mount, mounted.__contains__)
    cgroup = str(root / "sys/fs/cgroup")
    read_only = (None, cgroup, None, syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY
                 | containerfs.CGROUP_MOUNT.flags, None)
    assert calls == [("cgroup2", cgroup, "cgroup2", containerfs.CGROUP_MOUNT.flags, None),
                     read_only]
    # (with the box's group made: that group is what the box sees there, as docker's does)
    calls.clear()
    mounted.discard(cgroup)
    containerfs.mount_kernel_filesystems(str(root), fake_mount, mounted.__contains__,
                                         cgroup="/sys/fs/cgroup/box")
    assert calls == [("/sys/fs/cgroup/box", cgroup, None, syscalls.MS_BIND, None), read_only]


def test_symlinked_kernel_fs_targets_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("../../../../..", root / "proc")  # would cover the rootfs itself

    def fail_mount(*args: object) -> None:
        raise AssertionError(f"mounted {args}")

    with pytest.raises(FailedPrecondition, match=r"the image's /proc is a symlink \(to /\)"):
        containerfs.mount_kernel_filesystems(str(root), fail_mount, lambda _: False)


def test_parse_mountinfo() -> None:
    text = (
        "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "40 22 0:5 / /run/box\\040lite rw - tmpfs tmpfs rw\n"
        "41 22 254:16 / /run/boxlite/rootfs rw,relatime - ext4 /dev/vdb rw\n"
        "garbage\n"
    )
    entries = parse_mountinfo(text)
    assert [(e.dev, e.mount_point, e.fstype, e.source) for e in entries] == [
        ("254:1", "/", "ext4", "/dev/vda"),
        ("0:5", "/run/box lite", "tmpfs", "tmpfs"),
        ("254:16", "/run/boxlite/rootfs", "ext4", "/dev/vdb"),
    ]


def test_find_disk_by_serial(tmp_path: Path) -> None:
    sys_block = tmp_path / "block"
    dev = tmp_path / "dev"
    dev.mkdir()
    for name, serial, devno in [
        ("vda", "boxlite-agent", "254:0"),
        ("vdb", "rootfs-0123456789abcdef", "254:16"),  # longer than 20: truncated
        ("sda", "rootfs", "8:0"),
    ]:
        (sys_block / name).mkdir(parents=True)
        (sys_block / name / "serial").write_text(serial[:20] + "\n")
        (sys_block / name / "dev").write_text(devno + "\n")
    (sys_block / "vdc").mkdir()  # no serial file: skipped
    (dev / "vdb").touch()  # an existing node is used as is
    assert list_disks(str(sys_block)) == {
        "vda": ("boxlite-agent", "254:0"),
        "vdb": ("rootfs-0123456789abc", "254:16"),
    }
    disk = find_disk("rootfs-0123456789abcdef", str(sys_block), str(dev))
    assert disk is not None and (disk.name, disk.node, disk.dev) == ("vdb", str(dev / "vdb"), "254:16")
    assert find_disk("rootfs", str(sys_block), str(dev)) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_find_disk_creates_a_missing_node(tmp_path: Path) -> None:
    (tmp_path / "block/vdb").mkdir(parents=True)
    (tmp_path / "block/vdb/serial").write_text("s1")
    (tmp_path / "block/vdb/dev").write_text("254:16\n")
    (tmp_path / "dev").mkdir()
    disk = find_disk("s1", str(tmp_path / "block"), str(tmp_path / "dev"))
    assert disk is not None
    st = os.stat(disk.node)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (254, 16)


def test_find_port(tmp_path: Path) -> None:
    sys_dir = tmp_path / "virtio-ports"
    dev = tmp_path / "dev"
    dev.mkdir()
    for name, port_name in [("vport0p0", "org.qemu.other"), ("vport1p1", "org.boxlite.agent.0")]:
        (sys_dir / name).mkdir(parents=True)
        (sys_dir / name / "name").write_text(port_name + "\n")
        (sys_dir / name / "dev").write_text("250:1\n")
        (dev / name).touch()
    assert find_port("org.boxlite.agent.0", str(sys_dir), str(dev)) == str(dev / "vport1p1")
    assert find_port("missing", str(sys_dir), str(dev)) is None


def test_rand_pool_info_layout() -> None:
    buf = rand_pool_info(b"abcdef")
    count, size = struct.unpack_from("ii", buf)
    assert (count, size) == (48, 6)
    assert bytes(buf[8:14]) == b"abcdef" and len(buf) % 4 == 0
    assert struct.unpack_from("ii", rand_pool_info(b"x" * 10000))[1] == 4096


REAP_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {agent_dir!r})
    from boxlite_agent.init import reap_until
    others = [os.fork() or os._exit(3) for _ in range(3)]
    target = os.fork()
    if target == 0:
        time.sleep(0.2)
        os._exit(5)
    status = reap_until(target)
    print(os.waitstatus_to_exitcode(status))
    # every other child was reaped on the way: none is left
    try:
        os.waitpid(-1, os.WNOHANG)
        print("children left")
    except ChildProcessError:
        print("none left")
    """
)


def test_init_reaps_everything_until_the_agent_exits() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", REAP_SCRIPT.format(agent_dir=AGENT_DIR)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.stdout.split() == ["5", "none", "left"], proc.stderr


def test_a_second_init_keeps_the_mounted_rootfs(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    """A VM restored from a primed template had a box-neutral Init before its save: the
    box's own Init sets hostname, network and /etc files, and mounts nothing again."""
    from boxlite_agent import vm
    from boxlite_agent.blockdev import Disk

    calls: list[str] = []
    monkeypatch.setattr(vm, "configure", lambda net, current: calls.append(f"net {net.mode}"))
    monkeypatch.setattr(vm.socket, "sethostname", lambda name: calls.append(f"hostname {name}"))
    monkeypatch.setattr(vm, "wait_for_disk", lambda serial: Disk("vdb", "/dev/vdb", "254:16"))
    monkeypatch.setattr(vm, "mount_at", lambda path: None)
    monkeypatch.setattr(vm, "flush_buffers", lambda node: calls.append(f"flush {node}"))
    monkeypatch.setattr(vm.syscalls, "mount", lambda src, dst, *a: calls.append(f"mount {src}"))
    monkeypatch.setattr(vm, "grow_to_disk", lambda root, node, name: calls.append(f"grow {name}"))
    monkeypatch.setattr(vm, "mounted_now", lambda: lambda path: False)
    monkeypatch.setattr(vm, "mount_kernel_filesystems", lambda root, **kw: calls.append("kfs"))
    monkeypatch.setattr(vm, "provide_etc_files",
                        lambda root, hostname, etc, **kw: calls.append(f"etc {hostname}"))
    monkeypatch.setattr(vm, "write_etc_files",
                        lambda hostname, etc, net: calls.append(f"etc content {hostname}"))
    guest = vm.VmGuest(str(tmp_path / "rootfs"), str(tmp_path / "etc"))
    from boxlite_agent.netconf import NetSetup

    guest.init("", 0, b"", "rootfs", NetSetup())
    # the disk's cached blocks are dropped before its first mount
    assert calls == ["net none", "flush /dev/vdb", "mount /dev/vdb", "grow vdb", "kfs",
                     f"etc {guest.hostname()}"]
    calls.clear()
    guest.init("box1", 0, b"", "rootfs", NetSetup(mode="nat", address="10.0.2.15/24"))
    assert calls == ["hostname box1", "net nat", "etc content box1"]  # no new bind mounts
    assert guest.rootfs() == str(tmp_path / "rootfs")


def test_etc_files_are_rewritten_in_place(tmp_path: Path) -> None:
    from boxlite_agent.netconf import NetSetup

    etc = tmp_path / "etc"
    assert containerfs.write_etc_files("one", str(etc)) == ["hostname", "hosts", "resolv.conf"]
    inode = (etc / "hosts").stat().st_ino
    containerfs.write_etc_files("two", str(etc), NetSetup(mode="nat", address="10.0.2.15/24",
                                                          dns=("10.0.2.3",)))
    assert (etc / "hosts").stat().st_ino == inode  # what a bind mount of it shows changes too
    assert (etc / "hostname").read_text() == "two\n"
    assert (etc / "hosts").read_text().endswith("10.0.2.15\ttwo\n")
    assert (etc / "resolv.conf").read_text() == "nameserver 10.0.2.3\n"


def test_tmpfs_mounts_take_dockers_defaults_and_the_root_turns_read_only(tmp_path: Path) -> None:
    from boxlite_agent.rootmounts import TmpfsSpec, make_read_only, mount_tmpfs

    fake = FakeMounts()
    calls, mounted, fake_mount = fake.calls, fake.mounted, fake.mount
    root = tmp_path / "root"
    root.mkdir()
    specs = [TmpfsSpec("/run/app", size_bytes=1 << 20, mode=0o755, exec_=True, uid=7),
             TmpfsSpec("/run"), TmpfsSpec("/data", readonly=True, suid=True, dev=True)]
    made = [mount_tmpfs(str(root), specs, fake_mount, mounted.__contains__) for _ in range(2)]
    assert made == [["/run", "/data", "/run/app"], []]  # (an Init sent again: nothing twice)
    noexec, nosuid, nodev = syscalls.MS_NOEXEC, syscalls.MS_NOSUID, syscalls.MS_NODEV
    assert calls == [  # (parents first)
        ("tmpfs", str(root / "run"), "tmpfs", noexec | nosuid | nodev, "mode=1777,uid=0,gid=0"),
        ("tmpfs", str(root / "data"), "tmpfs", syscalls.MS_RDONLY | noexec, "mode=1777,uid=0,gid=0"),
        ("tmpfs", str(root / "run/app"), "tmpfs", nosuid | nodev,
         "mode=755,uid=7,gid=0,size=1048576"),
    ]
    assert (root / "run/app").is_dir()
    (root / "file").write_text("the image's file")
    with pytest.raises(InvalidArgument, match="--tmpfs /file/x: cannot mount there: Not a dir"):
        mount_tmpfs(str(root), [TmpfsSpec("/file/x")], fake_mount, mounted.__contains__)
    # /dev/shm, the box's own (mounted already): remounted at the size asked
    calls.clear()
    mounted.add(str(root / "dev/shm"))
    mount_tmpfs(str(root), [TmpfsSpec("/dev/shm", size_bytes=1 << 30)], fake_mount,
                mounted.__contains__)
    assert calls == [(None, str(root / "dev/shm"), None,
                      syscalls.MS_REMOUNT | noexec | nosuid | nodev,
                      "mode=1777,uid=0,gid=0,size=1073741824")]
    assert (root / "dev/shm").stat().st_mode & 0o7777 == 0o1777
    # (no size: a new tmpfs's, half the RAM; a remount keeps mode and owner: set after)
    calls.clear()
    mount_tmpfs(str(root), [TmpfsSpec("/dev/shm", mode=0o1700, uid=os.getuid(),
                                      gid=os.getgid())], fake_mount, mounted.__contains__)
    assert calls[0][4] == f"mode=1700,uid={os.getuid()},gid={os.getgid()},size=50%"
    assert (root / "dev/shm").stat().st_mode & 0o7777 == 0o1700
    calls.clear()
    make_read_only(str(root), fake_mount)
    assert calls == [(None, str(root), None,
                      syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY, None)]


@pytest.mark.parametrize("spec", [
    {"target": "relative"}, {"target": "/"}, {"target": "/proc/x"}, {"target": "/a\0b"},
    {"target": "/dev/shm/x"}, {"target": "/dev"},
    {"target": "/t", "mode": 0o17777}, {"target": "/t", "uid": 1 << 32},
])
def test_the_agent_refuses_tmpfs_mounts_it_should_not_make(spec: dict[str, object]) -> None:
    from boxlite_agent.rootmounts import TmpfsSpec, check

    with pytest.raises(InvalidArgument, match="invalid tmpfs"):
        check([TmpfsSpec(**spec)])  # type: ignore[arg-type]
