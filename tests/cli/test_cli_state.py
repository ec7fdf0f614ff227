"""The CLI over a home with things in it, still without any VM.

Boxes and images are planted through the library (state files, an OCI layout), then
driven through `boxlite`: corrupt state, dead shims, bad names, logs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_console_scripts import ScriptRunner

from boxlite_cli.errors import NoSuchBox
from boxlite_cli.oci.store import ImageStore
from boxlite_cli.shim.logframes import LogWriter, write_frame
from boxlite_cli.state.boxes import BoxStore
from boxlite_cli.state.network import PortMapping
from boxlite_cli.state.paths import home_paths
from boxlite_cli.state.pidfile import ProcessRecord
from boxlite_cli.state.records import BoxConfig, BoxState, ProcessSpec, Status
from boxlite_cli.state.volumes import Mount
from tests.cli.helpers import assert_one_line_error, bx

pytestmark = pytest.mark.script_launch_mode("inprocess")

IMAGE = "localhost/tiny:1"
BOX_ID = "c0ffee" + "1" * 58


def box_dirs(home: Path) -> list[str]:
    boxes = home / "boxes"
    return sorted(p.name for p in boxes.iterdir()) if boxes.exists() else []


def names(home: Path) -> list[str]:
    d = home / "names"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def _blob(blobs: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def plant_image(tmp_path: Path, name: str = IMAGE, created: str | None = None,
                **config: Any) -> str:
    """`name` in the home's store: CMD ["sh"] (and `config`), one tiny layer; made at
    `created` (RFC 3339) when given."""
    layout = tmp_path / f"layout-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    layer = _blob(blobs, buf.getvalue())
    config = _blob(blobs, json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/", **config},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        **({"created": created} if created else {}),
    }).encode())
    manifest = _blob(blobs, json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
    }).encode())
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
        "annotations": {"org.opencontainers.image.ref.name": name},
    }]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    paths = home_paths()
    paths.ensure()
    ImageStore(paths.images).load_oci_layout(layout)
    return name


@pytest.fixture
def image(home: Path, tmp_path: Path) -> str:
    """`localhost/tiny:1` in the home's store: CMD ["sh"], one tiny layer."""
    return plant_image(tmp_path)


def plant_box(box_id: str = BOX_ID, name: str = "planted", status: Status = Status.EXITED,
              exit_code: int | None = 0) -> BoxState:
    paths = home_paths()
    paths.ensure()
    store = BoxStore(paths)
    store.create_dir(box_id)
    store.reserve_name(name, box_id)
    state = BoxState(
        id=box_id, name=name, status=status, exit_code=exit_code,
        config=BoxConfig(image="localhost/tiny:1", image_id="sha256:" + "a" * 64,
                         rootfs_base="", process=ProcessSpec(argv=["sh", "-c", "echo hi"])),
    )
    with store.lock(box_id):
        store.write(state)
    return state


# a planted image: bad options are refused before anything is made --------------------

def test_images_lists_the_planted_image(script_runner: ScriptRunner, image: str) -> None:
    result = bx(script_runner, "images", "--format", "json")
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)
    assert entry["reference"] == "localhost/tiny:1"
    table = bx(script_runner, "images")
    assert table.stdout.splitlines()[1].split()[:2] == ["localhost/tiny", "1"]


def test_images_takes_dockers_repository_argument_filters_and_columns(
        script_runner: ScriptRunner, image: str) -> None:
    """`docker images debian`, `-f dangling=true`, `--digests`, `--no-trunc`, `-a`."""
    [entry] = json.loads(bx(script_runner, "images", "--format", "json").stdout)
    def listed(*args: str) -> list[str]:
        result = bx(script_runner, "images", "--format", "{{.Repository}}:{{.Tag}}", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    for matching in (["localhost/tiny"], ["localhost/tiny:1"], ["localhost/t*"],
                     ["-f", "reference=*tiny:1"], ["-f", "dangling=false"], ["-a"]):
        assert listed(*matching) == ["localhost/tiny:1"], matching
    for other in (["tiny"], ["localhost/tiny:2"], ["-f", "dangling=true"],
                  ["-f", "label=nope"], ["-f", "reference=x", "-f", "reference=y"]):
        assert listed(*other) == [], other
    assert listed("-f", "reference=x", "-f", "reference=localhost/*") == ["localhost/tiny:1"]
    full = bx(script_runner, "images", "-q", "--no-trunc").stdout.strip()
    assert full == entry["id"]
    table = bx(script_runner, "images", "--digests", "--no-trunc").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[2:4] == [entry["digest"], entry["id"]]
    assert_one_line_error(bx(script_runner, "images", "-f", "size=1"), "invalid filter 'size'")
    assert_one_line_error(bx(script_runner, "images", "-f", "dangling=maybe"),
                          "invalid filter 'dangling=maybe'")


def test_images_are_listed_newest_first(script_runner: ScriptRunner, tmp_path: Path) -> None:
    plant_image(tmp_path, "docker.io/library/old:1", created="2020-01-01T00:00:00Z",
                Cmd=["old"])
    plant_image(tmp_path, "localhost/new:1", created="2026-01-01T00:00:00Z")
    plant_image(tmp_path, "localhost/mid:1", created="2023-01-01T00:00:00Z", Cmd=["mid"])
    listed = bx(script_runner, "images", "--format", "{{.Repository}}").stdout.splitlines()
    assert listed == ["localhost/new", "localhost/mid", "old"]  # (docker's: by time, not name)


def test_dangling_is_an_image_no_tag_names_as_dockers(script_runner: ScriptRunner,
                                                        image: str) -> None:
    """An image whose tag moved on in one repository but that another tag still names:
    listed under the old repository as <none>, yet not dangling, so no prune removes
    it; `info` counts it once."""
    from boxlite_cli.oci.reference import parse_reference

    store = ImageStore(home_paths().images)
    digest = store.lookup(image).manifest_digest
    store.tag(parse_reference(f"localhost/old@{digest}"), digest)
    listed = bx(script_runner, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert listed.splitlines() == ["localhost/old:<none>", "localhost/tiny:1"]
    for dangling, rows in (("true", []), ("false", ["localhost/old", "localhost/tiny"])):
        shown = bx(script_runner, "images", "-f", f"dangling={dangling}", "--format",
                   "{{.Repository}}").stdout
        assert shown.splitlines() == rows, dangling
    assert bx(script_runner, "info", "--format", "{{.Images}}").stdout == "1\n"
    assert bx(script_runner, "image", "prune", "-f").returncode == 0
    assert bx(script_runner, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout == listed
    store.untag(["localhost/tiny:1"])  # (now no tag names it: dangling, and pruned)
    assert bx(script_runner, "images", "-f", "dangling=true", "--format",
              "{{.Repository}}:{{.Tag}}").stdout.splitlines() == [
        "localhost/old:<none>", "localhost/tiny:<none>"]  # (its digest names are left)
    assert bx(script_runner, "image", "prune", "-f").returncode == 0
    assert bx(script_runner, "images", "-q").stdout == ""


def test_an_image_id_from_images_q_names_the_image(script_runner: ScriptRunner, image: str,
                                                   home: Path) -> None:
    short = bx(script_runner, "images", "-q").stdout.strip()
    [entry] = json.loads(bx(script_runner, "image", "inspect", image).stdout)
    assert entry["Id"][7:19] == short
    # docker's Config keys are there even when the image's config leaves them out
    assert bx(script_runner, "image", "inspect", "-f", "[{{.Config.User}}] "
              "{{.Config.Labels}} {{.Config.Entrypoint}}", image).stdout == "[] map[] []\n"
    for ref in (short, entry["Id"], entry["Id"][7:]):
        for command in (["image", "inspect"], ["inspect"]):
            result = bx(script_runner, *command, ref)
            assert result.returncode == 0, result.stderr
            assert [r["Id"] for r in json.loads(result.stdout)] == [entry["Id"]]
    created = bx(script_runner, "create", "--pull", "never", "--name", "by-id", short)
    assert created.returncode == 0, created.stderr
    [box] = json.loads(bx(script_runner, "inspect", "by-id").stdout)
    assert box["config"]["image_id"] == entry["Id"]
    # (as docker's: the image as it was asked for, in ps and Config.Image)
    assert bx(script_runner, "ps", "-a", "--format", "{{.Image}}").stdout == f"{short}\n"
    assert bx(script_runner, "inspect", "-f", "{{.Config.Image}}", "by-id").stdout == f"{short}\n"
    assert bx(script_runner, "ps", "-aq", "-f", f"ancestor={short}").stdout.strip() == box["id"][:12]
    assert bx(script_runner, "tag", image, "myd").returncode == 0
    assert bx(script_runner, "create", "--pull", "never", "--name", "by-name", "myd").returncode == 0
    assert bx(script_runner, "ps", "-a", "-f", "name=by-name", "--format", "{{.Image}}"
              ).stdout == "myd\n"
    # (docker's ancestor=: the image the name means, so the box made by its id too)
    assert bx(script_runner, "ps", "-a", "-f", "ancestor=myd:latest", "--format", "{{.Names}}"
              ).stdout == "by-name\nby-id\n"
    bx(script_runner, "rm", "by-name")
    missing = bx(script_runner, "create", "--name", "nope", "sha256:" + "0" * 64)
    assert_one_line_error(missing, "no such image: sha256:" + "0" * 64)
    assert names(home) == ["by-id"]


def test_a_missing_tag_names_the_tags_the_store_has(script_runner: ScriptRunner, image: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`run localhost/tiny` means :latest, which is not here: the pull's error says what is."""
    monkeypatch.setenv("BOXLITE_REGISTRY_RETRIES", "0")
    result = bx(script_runner, "create", "localhost/tiny")
    assert_one_line_error(result)
    assert result.stderr.splitlines()[1] == (
        "  hint: localhost/tiny:latest is not in the local store, which has localhost/tiny:1; "
        "check the registry address and your network, then retry")


def test_ps_filters_before_and_since_a_box(script_runner: ScriptRunner) -> None:
    for n, name in enumerate(("first", "second", "third")):
        plant_box(str(n) * 64, name)
        time.sleep(0.01)  # (distinct creation times)
    listed = bx(script_runner, "ps", "-a", "--format", "{{.Names}}", "--filter", "before=third",
                "--filter", "since=first")
    assert listed.stdout == "second\n", listed.stderr
    assert bx(script_runner, "ps", "-a", "-q", "-f", "since=" + "1" * 12).stdout == "2" * 12 + "\n"
    assert_one_line_error(bx(script_runner, "ps", "-f", "before=ghost"), "no such box: ghost")


def test_labels_and_ps_filters(script_runner: ScriptRunner, image: str) -> None:
    for name, labels in (("a1", ["job=1", "kind=ci"]), ("a2", ["job=2"]), ("bx", [])):
        created = bx(script_runner, "create", "--name", name,
                     *(x for label in labels for x in ("-l", label)), image)
        assert created.returncode == 0, created.stderr
    [a1] = json.loads(bx(script_runner, "inspect", "a1").stdout)
    assert a1["config"]["labels"] == {"job": "1", "kind": "ci"}

    def listed(*args: str) -> list[str]:
        result = bx(script_runner, "ps", "--format", "json", *args)
        assert result.returncode == 0, result.stderr
        return sorted(b["name"] for b in json.loads(result.stdout))

    assert listed() == []  # (created boxes: not running)
    assert listed("-a", "--filter", "label=job") == ["a1", "a2"]
    assert listed("-a", "-f", "label=job=2") == ["a2"]
    assert listed("-f", "status=created", "-f", "name=a") == ["a1", "a2"]  # (no -a needed)
    assert listed("-n", "2") == ["a2", "bx"]
    assert listed("-l") == ["bx"]
    assert bx(script_runner, "inspect", "-l", "-f", "{{.Name}}").stdout == "/bx\n"  # (docker's)
    created = bx(script_runner, "inspect", "-f", "{{.Created}}", "bx").stdout
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\n", created), created
    for alias in ("ls", "list"):  # (docker's container ls, the original BoxLite's list)
        assert bx(script_runner, alias, "-aq").stdout == bx(script_runner, "ps", "-aq").stdout
    quiet = bx(script_runner, "ps", "-aq", "--no-trunc", "--filter", "label=kind=ci")
    [a1_id] = quiet.stdout.split()
    assert a1_id == a1["id"]
    assert_one_line_error(bx(script_runner, "ps", "--filter", "colour=red"),
                          "invalid filter 'colour'")
    # docker's --format templates, a line per box
    lines = bx(script_runner, "ps", "-a", "--format", "{{.Names}}|{{.State}}|{{.Labels}}",
               "-f", "name=a").stdout.splitlines()
    assert sorted(lines) == ["a1|created|job=1,kind=ci", "a2|created|job=2"]
    fields = bx(script_runner, "ps", "-a", "-f", "name=^a1$", "--format",
                '{{.Label "kind"}}|{{.Label "nope"}}|{{.Networks}}|{{.LocalVolumes}}|{{.Mounts}}|'
                "{{.CreatedAt}}|{{.Size}}").stdout.strip().split("|")
    assert fields[:5] == ["ci", "", "nat", "0", ""]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+", fields[5])  # Go's
    assert re.fullmatch(r"[0-9.]+k?B|[0-9.]+MB", fields[6])
    labels = bx(script_runner, "inspect", "-f", "{{.Config.Labels}}", "a1").stdout
    assert labels == "map[job:1 kind:ci]\n"  # (a map, as Go prints it)
    assert bx(script_runner, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout == (
        "localhost/tiny:1\n")
    assert_one_line_error(bx(script_runner, "ps", "--format", "wide"), "use table, json or a template")
    table = bx(script_runner, "ps", "-a", "-f", "name=^a1$", "--format",
               "table {{.Names}}\t{{.State}}").stdout.splitlines()
    assert [line.split() for line in table] == [["NAMES", "STATE"], ["a1", "created"]]
    # a box named but not running: a row of zeros, as docker's stats
    stats = json.loads(bx(script_runner, "stats", "--no-stream", "--format", "json", "a1").stdout)
    assert [(s["name"], s["cpu_percent"], s["memory_bytes"]) for s in stats] == [("a1", 0.0, 0)]
    line = bx(script_runner, "stats", "--no-stream", "--format",
              "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.MemPerc}}", "a1").stdout
    assert line == "a1 0.00% 0B / 512MiB 0.00%\n"
    for bad in ("nan", "inf", "-0.5"):
        assert_one_line_error(bx(script_runner, "create", "--stop-timeout", bad, image))
    # docker's restart policy, in its place of inspect
    assert bx(script_runner, "create", "--name", "again", "--restart", "on-failure:3",
              image).returncode == 0
    assert bx(script_runner, "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}:"
              "{{.HostConfig.RestartPolicy.MaximumRetryCount}} {{.RestartCount}}", "again"
              ).stdout == "on-failure:3 0\n"
    # -1: wait for ever before SIGKILL (docker's), shown as given
    assert bx(script_runner, "create", "--name", "patient", "--stop-timeout", "-1",
              image).returncode == 0
    assert bx(script_runner, "inspect", "-f", "{{.Config.StopTimeout}}", "patient"
              ).stdout == "-1\n"


def test_capabilities_are_kept_as_given_normalized(script_runner: ScriptRunner,
                                                   image: str) -> None:
    created = bx(script_runner, "create", "--name", "capped", "-h", "capbox", "--cap-drop", "all",
                 "--cap-add", "cap_net_bind_service", "--cap-drop", "ALL", image)
    assert created.returncode == 0, created.stderr
    [box] = json.loads(bx(script_runner, "inspect", "capped").stdout)
    assert (box["config"]["cap_drop"], box["config"]["cap_add"]) == (["ALL"], ["NET_BIND_SERVICE"])
    assert box["config"]["hostname"] == "capbox"  # (-h: docker's --hostname)


def test_dockers_label_file_platform_and_privileged_are_taken(script_runner: ScriptRunner,
                                                              image: str, tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.write_text("# a comment\n\n  tier=web\nowner=two words\nbare\n")
    created = bx(script_runner, "create", "--name", "/dockerish", "--label-file", str(labels),
                 "-l", "tier=db", "--platform", "linux/amd64", "--privileged", "--restart", "no",
                 "--network", "bridge", "-v", f"{tmp_path}:/data:ro,z", image)
    assert created.returncode == 0, created.stderr
    [box] = json.loads(bx(script_runner, "inspect", "dockerish").stdout)
    assert box["config"]["labels"] == {"tier": "db", "owner": "two words", "bare": ""}
    assert box["name"] == "dockerish"
    assert box["config"]["privileged"] is True
    assert bx(script_runner, "create", "--name", "plain", image).returncode == 0
    privileged = bx(script_runner, "inspect", "-f", "{{.HostConfig.Privileged}}", "dockerish",
                    "plain")
    assert privileged.stdout == "true\nfalse\n", privileged.stderr
    assert box["config"]["network"]["mode"] == "nat"
    assert [(m["target"], m["readonly"]) for m in box["config"]["mounts"]] == [("/data", True)]


def test_read_only_and_tmpfs_are_kept_as_given(script_runner: ScriptRunner, image: str,
                                               tmp_path: Path) -> None:
    created = bx(script_runner, "create", "--name", "ro", "--read-only", "--tmpfs", "/tmp",
                 "--tmpfs", "/run:size=1m,exec", "--mount", "type=tmpfs,dst=/cache,tmpfs-size=2m",
                 "--mount", f"type=bind,source={tmp_path},target=/data,readonly", image)
    assert created.returncode == 0, created.stderr
    [box] = json.loads(bx(script_runner, "inspect", "ro").stdout)
    assert (box["config"]["read_only"], box["config"]["tmpfs"]) == (
        True, ["/tmp", "/run:size=1m,exec", "/cache:size=2m"])
    assert [(m["source"], m["target"], m["readonly"]) for m in box["config"]["mounts"]] == [
        (str(tmp_path), "/data", True)]  # (docker's --mount: the -v it means)


@pytest.mark.parametrize(("cpus", "vcpus", "limit"), [("1", 1, 0.0), ("0.5", 1, 0.5),
                                                      ("1.5", 2, 1.5)])
def test_fractional_cpus_round_the_vcpus_up_and_keep_the_limit(
        script_runner: ScriptRunner, image: str, cpus: str, vcpus: int, limit: float) -> None:
    created = bx(script_runner, "create", "--name", "cpu", "--cpus", cpus, image)
    assert created.returncode == 0, created.stderr
    [box] = json.loads(bx(script_runner, "inspect", "cpu").stdout)
    assert (box["config"]["cpus"], box["config"]["cpu_limit"]) == (vcpus, limit)


def test_cidfile_gets_the_id_and_a_used_one_is_refused(script_runner: ScriptRunner, image: str,
                                                      home: Path, tmp_path: Path) -> None:
    cid = tmp_path / "cid"
    created = bx(script_runner, "create", "--cidfile", str(cid), image)
    assert created.returncode == 0, created.stderr
    assert cid.read_text() == created.stdout.strip()  # (no newline, as docker's)
    again = bx(script_runner, "create", "--cidfile", str(cid), image)
    assert_one_line_error(again, f"the --cidfile {cid} exists already")
    assert len(box_dirs(home)) == 1  # (refused before anything was made)
    failed = bx(script_runner, "create", "--cidfile", str(tmp_path / "new"), "--name", "bad/name",
                image)
    assert failed.returncode == 125
    assert not (tmp_path / "new").exists()  # (no box came of it: the file it made went)
    empty = tmp_path / "empty"
    empty.write_text("")  # (an empty one is docker's too: taken)
    assert bx(script_runner, "create", "--cidfile", str(empty), image).returncode == 0
    assert len(empty.read_text()) == 64


def test_dockers_net_and_init_are_taken(script_runner: ScriptRunner, image: str) -> None:
    """--net is --network; --init changes nothing (every box has its init)."""
    created = bx(script_runner, "create", "--init", "--net", "none", "--name", "nd", image)
    assert created.returncode == 0, created.stderr
    [box] = json.loads(bx(script_runner, "inspect", "nd").stdout)
    assert box["config"]["network"]["mode"] == "none"


@pytest.mark.parametrize("command", ["create", "run"])
@pytest.mark.parametrize("name", ["bad name!", "-leading-dash", "a/b", "x" * 200])
def test_bad_box_name(script_runner: ScriptRunner, image: str, home: Path, command: str,
                      name: str) -> None:
    result = bx(script_runner, command, "--name", name, image)
    assert_one_line_error(result, "invalid box name")
    assert box_dirs(home) == []
    assert names(home) == []


def test_bad_box_name_is_reported_before_the_image_is_looked_up(script_runner: ScriptRunner,
                                                                home: Path) -> None:
    result = bx(script_runner, "create", "--name", "bad name!", "nosuchimage")
    assert_one_line_error(result, "invalid box name")
    assert box_dirs(home) == []


def test_name_in_use(script_runner: ScriptRunner, image: str, home: Path) -> None:
    plant_box(name="taken")
    result = bx(script_runner, "create", "--name", "taken", image)
    assert_one_line_error(result, '"taken" is already in use')
    assert result.stderr.splitlines()[1] == (
        "  hint: remove (or rename) that box to reuse the name, or choose another")
    assert box_dirs(home) == [BOX_ID]
    assert os.readlink(home / "names" / "taken") == BOX_ID


def test_rename_to_its_own_name_is_refused(script_runner: ScriptRunner, home: Path) -> None:
    plant_box(name="same")
    result = bx(script_runner, "rename", "same", "same")
    assert_one_line_error(result, "already has the name 'same'")
    assert os.readlink(home / "names" / "same") == BOX_ID
    assert bx(script_runner, "rename", "same", "/other").returncode == 0  # (docker's /NAME)
    assert os.readlink(home / "names" / "other") == BOX_ID


@pytest.mark.parametrize(("args", "needle"), [
    (["-e", "=oops"], "invalid environment variable"),
    (["-w", "relative/dir"], "absolute"),
    (["--entrypoint", ""], "no command specified"),
    (["--env-file", "/nonexistent/env"], "env file"),
    (["--memory", "1k"], "at least 128 MiB"),
    (["--cpus", "0.001"], "invalid --cpus '0.001'"),
    (["-l", "b =2"], "the key has whitespace"),
    (["--platform", "linux/arm64"], "invalid --platform 'linux/arm64'"),
    (["--label-file", "/nonexistent/labels"], "cannot read label file"),
    (["--tmpfs", "/tmp:size=lots"], "invalid --tmpfs '/tmp:size=lots'"),
    (["--mount", "type=bind,target=/x"], "invalid --mount 'type=bind,target=/x'"),
    (["--restart", "bogus"], "invalid --restart 'bogus': a policy is no, always"),
    (["--restart", "always:3"], "only on-failure takes a count"),
    (["--rm", "--restart", "always"], "--restart always and --rm exclude each other"),
    (["--tmpfs", "/data", "-v", "/tmp:/data"], "duplicate mount point /data"),
    (["--network", "host"], "invalid --network 'host'"),
    (["-it", "--detach-keys", "ctrl-1"], "invalid detach key 'ctrl-1'"),
    (["-e", "A=" + b"\xff".decode(errors="surrogateescape")], "not valid UTF-8"),
])
def test_bad_process_options_leave_nothing(script_runner: ScriptRunner, image: str, home: Path,
                                           args: list[str], needle: str) -> None:
    result = bx(script_runner, "run", *args, image)
    assert_one_line_error(result, needle)
    assert box_dirs(home) == []
    assert names(home) == []


@pytest.mark.parametrize("command", [["pull"], ["image", "pull"]])
def test_pull_takes_dockers_platform_of_the_guest_only(script_runner: ScriptRunner, home: Path,
                                                       command: list[str]) -> None:
    refused = bx(script_runner, *command, "--platform", "linux/arm64", "example.com/a:1")
    assert_one_line_error(refused, "invalid --platform 'linux/arm64'")
    # (taken: the pull goes on to the store, where the image is, with no registry asked)
    listed = bx(script_runner, *command, "--platform", "linux/amd64", "--help")
    assert listed.returncode == 0 and "--platform OS/ARCH" in listed.stdout
    assert not (home / "images" / "tmp").exists() or not any((home / "images" / "tmp").iterdir())


def test_a_bad_log_size_leaves_nothing(script_runner: ScriptRunner, image: str, home: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOXLITE_LOG_MAX_SIZE", "10 apples")
    for command in ("run", "create"):
        result = bx(script_runner, command, image, "true")
        assert_one_line_error(result, "invalid BOXLITE_LOG_MAX_SIZE '10 apples'")
    assert box_dirs(home) == []
    assert names(home) == []


@pytest.mark.parametrize(("variable", "value"), [
    ("BOXLITE_SPARES", "yes"), ("BOXLITE_SPARE_IDLE_S", "0"), ("BOXLITE_SPARE_IDLE_S", "soon"),
    ("BOXLITE_SPARE_IDLE_S", "inf"),
])
def test_bad_spare_settings_leave_nothing(script_runner: ScriptRunner, image: str, home: Path,
                                          monkeypatch: pytest.MonkeyPatch, variable: str,
                                          value: str) -> None:
    monkeypatch.setenv(variable, value)
    for command in ("run", "create"):
        result = bx(script_runner, command, image, "true")
        assert_one_line_error(result, f"invalid {variable}={value!r}")
    assert box_dirs(home) == []
    assert names(home) == []
    plant_box(status=Status.CREATED, exit_code=None)
    result = bx(script_runner, "start", "planted")  # (refused before anything starts)
    assert_one_line_error(result, f"invalid {variable}={value!r}")
    state = json.loads(bx(script_runner, "inspect", "planted").stdout)
    assert state[0]["status"] == "created"
    assert not (home / "spares").exists()


@pytest.mark.script_launch_mode("subprocess")  # (a real pipe on fd 0, whatever pytest's is)
def test_interactive_tty_needs_a_terminal_on_stdin(script_runner: ScriptRunner, image: str,
                                                    home: Path) -> None:
    """docker's rule: -it with piped input would have the pty take the bytes for keys."""
    plant_box(status=Status.RUNNING)  # (its shim is dead: exec refuses it after the check)
    for args in (["run", "-it", image, "cat"], ["exec", "-it", "planted", "cat"]):
        result = script_runner.run(["boxlite", *args], stdin=io.StringIO("abc\x03def\n"),
                                   print_result=False)
        assert_one_line_error(result, "the input device is not a TTY")
        assert "drop -t" in result.stderr
    assert box_dirs(home) == [BOX_ID]


def test_run_rm_without_a_payload_leaves_no_box(script_runner: ScriptRunner, image: str,
                                                home: Path) -> None:
    result = bx(script_runner, "run", "--rm", image, "true")
    assert_one_line_error(result, "payload")
    assert "$BOXLITE_PAYLOAD names no built payload" in result.stderr
    ps = bx(script_runner, "ps", "-a", "--format", "json")
    assert json.loads(ps.stdout) == []
    assert box_dirs(home) == []


# planted boxes ---------------------------------------------------------------------------

def test_ps_shows_a_planted_box(script_runner: ScriptRunner) -> None:
    plant_box(exit_code=3)
    [entry] = json.loads(bx(script_runner, "ps", "-a", "--format", "json").stdout)
    assert (entry["id"], entry["name"], entry["status"], entry["exit_code"]) == (
        BOX_ID, "planted", "exited", 3)
    assert entry["command"] == ["sh", "-c", "echo hi"]
    assert bx(script_runner, "ps", "-a", "-q").stdout == BOX_ID[:12] + "\n"
    assert bx(script_runner, "ps", "-q").stdout == ""  # not running
    table = bx(script_runner, "ps", "-a").stdout.splitlines()
    assert table[1].startswith(BOX_ID[:12])
    assert "Exited (3)" in table[1] and table[1].endswith("planted")
    assert bx(script_runner, "ps", "-aq", "--format", "{{.Names}}").stdout == "planted\n"
    assert bx(script_runner, "ps", "-a", "--format", "table {{.ID}}\t{{.RunningFor}}"
              ).stdout.split("\n")[0].split() == ["BOX", "ID", "CREATED"]  # (docker's names)
    sized = bx(script_runner, "ps", "-a", "-s").stdout.splitlines()  # docker's -s: SIZE
    assert sized[0].split()[-2:] == ["NAMES", "SIZE"] and sized[1].split()[-2:] == ["planted", "0B"]


def test_a_box_gets_its_images_labels_under_its_own(script_runner: ScriptRunner, home: Path,
                                                   tmp_path: Path) -> None:
    labelled = plant_image(tmp_path, "localhost/labelled:1",
                           Labels={"org.image": "yes", "tier": "image"})
    created = bx(script_runner, "create", "--name", "lab", "-l", "tier=db", labelled)
    assert created.returncode == 0, created.stderr
    [box] = json.loads(bx(script_runner, "inspect", "lab").stdout)
    assert box["config"]["labels"] == {"org.image": "yes", "tier": "db"}
    assert bx(script_runner, "ps", "-aq", "-f", "label=org.image=yes").stdout.strip() == \
        box["id"][:12]  # (a clean-up by an image label finds it, as docker's)


def test_dockers_flag_values_and_short_option_equals(script_runner: ScriptRunner,
                                                    image: str) -> None:
    """`--rm=false`, `--init=true`, `-e=A=1`, as docker's flag parser takes them; the
    box's own command is left as given."""
    created = bx(script_runner, "create", "--rm=false", "--init=true", "-e=A=1", "--name",
                 "flags", image, "echo", "--rm=true")
    assert created.returncode == 0, created.stderr
    [box] = json.loads(bx(script_runner, "inspect", "flags").stdout)
    assert (box["config"]["auto_remove"], box["config"]["process"]["argv"][-2:]) == (
        False, ["echo", "--rm=true"])
    assert "A=1" in box["config"]["process"]["env"]


def completion_probe(shell: str, tmp_path: Path, probe: str, before: str = ""
                     ) -> subprocess.CompletedProcess[str]:
    """Run `probe` in `shell` (bash or zsh, no rc files), `before` it boxlite's
    completion script for it sourced, this boxlite on PATH."""
    from boxlite_cli.cli.docs import completion_script

    script = tmp_path / f"boxlite.{shell}"
    script.write_text(completion_script(shell))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    argv = ["bash", "--norc"] if shell == "bash" else ["zsh", "-f"]
    return subprocess.run([*argv, "-c", f"{before}source {script}; {probe}"],
                          capture_output=True, text=True, env=env, timeout=60)


BASH_T = ("t() { COMP_LINE=$1; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); "
          "_boxlite_completion boxlite; echo \"${COMPREPLY[*]}\"; }; ")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_completes_an_image_past_its_colon(image: str, tmp_path: Path) -> None:
    """bash splits words at `:`: `rmi localhost/tiny:<TAB>` reached boxlite as three
    words and completed nothing; the candidate is given after the `:` bash keeps."""
    done = completion_probe("bash", tmp_path, BASH_T + (
        "t 'boxlite rmi localhost/tiny:'; t 'boxlite rmi localhost/ti'; t 'boxlite ta'; "
        "t 'boxlite ps -f status=ru'; t 'boxlite run --mount type=volume,target=/x,so'; "
        "t 'boxlite ps --filter=status=ru'"))
    # (and past a `=`, which bash splits at too: it replaces `/x,so` there; and an
    # option's value given with `=`, which boxlite completes past the option's `=`)
    assert done.stdout.splitlines() == ["1", "localhost/tiny:1", "tag", "running",
                                        "/x,source=", "running"], done.stderr


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh (not installed here)")
def test_zsh_completion_leaves_no_space_where_the_word_goes_on(tmp_path: Path) -> None:
    """`KEY=` (and `BOX:`, `dir/`, `VALUE,`) go on with more of the word: added with
    no space after them (compadd -S ''); an option's `--opt=VALUE` keeps its `--opt=`.
    zsh's completion builtins are stood in for by functions that print their calls."""
    stand_ins = ("compdef() { : }; _describe() { : }; "
                 "compadd() { local name=${@[-1]}; print -r -- \"${@[1,-3]} :: ${(P)name}\" }; ")
    done = completion_probe("zsh", tmp_path, (
        "t() { words=(${(z)1}); CURRENT=${#words}; _boxlite_completion }; "
        "t 'boxlite ps -f st'; t 'boxlite ps -f status=ex'; t 'boxlite ps --filter=st'; "
        "t 'boxlite ps --filter=status=ex'"), before=stand_ins)
    assert done.stdout.splitlines() == [
        "-S  -U -V unsorted :: status=", "-U -V unsorted :: status=exited",
        "-S  -U -V unsorted :: --filter=status=", "-U -V unsorted :: --filter=status=exited",
    ], done.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_offers_images_where_commands_take_them(image: str,
                                                                tmp_path: Path) -> None:
    """inspect (boxes and images, as --type allows), images and pull."""
    plant_box(name="local-box")
    done = completion_probe("bash", tmp_path, BASH_T + (
        "t 'boxlite inspect lo'; t 'boxlite inspect --type image lo'; "
        "t 'boxlite inspect --type box lo'; t 'boxlite images lo'; t 'boxlite pull lo'"))
    assert done.stdout.splitlines() == [
        "local-box localhost/tiny:1", "localhost/tiny:1", "local-box", "localhost/tiny:1",
        "localhost/tiny:1"], done.stderr


def test_rmi_by_id_of_an_image_with_two_tags_must_be_forced(script_runner: ScriptRunner,
                                                            image: str) -> None:
    """docker's: by id, an image of one repository and one tag goes; one with two tags
    (one repository or two) is refused without -f, and nothing is untagged."""
    image_id = bx(script_runner, "images", "-q", image).stdout.strip()
    assert bx(script_runner, "tag", image, "localhost/tiny:2").returncode == 0
    before = bx(script_runner, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    assert_one_line_error(bx(script_runner, "rmi", image_id),
                          f"unable to delete {image_id} (must be forced)")
    assert bx(script_runner, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout == before
    assert bx(script_runner, "rmi", "localhost/tiny:2").returncode == 0  # (untagged only)
    removed = bx(script_runner, "rmi", image_id)  # (one tag left: it goes, by id)
    assert removed.returncode == 0, removed.stderr
    assert bx(script_runner, "images", "-q").stdout == ""


def test_tag_gives_an_image_another_name(script_runner: ScriptRunner, image: str) -> None:
    tagged = bx(script_runner, "tag", image, "mine/app")  # (docker's :latest)
    assert tagged.returncode == 0, tagged.stderr
    listed = bx(script_runner, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    ids = {line.split()[0]: line.split()[1] for line in listed.splitlines()}
    assert ids["mine/app:latest"] == ids[image]
    assert bx(script_runner, "image", "tag", "mine/app", "mine/app:v2").returncode == 0
    created = bx(script_runner, "create", "--name", "tagged", "mine/app:v2")
    assert created.returncode == 0, created.stderr
    assert_one_line_error(bx(script_runner, "tag", "nosuch", "x"), "no such image: nosuch")
    assert_one_line_error(bx(script_runner, "tag", image, "x@sha256:" + "0" * 64),
                          "a tag cannot name a digest")
    before = bx(script_runner, "images", "-q", "--no-trunc").stdout
    for hex_name in ("a" * 64, "mine/" + "b" * 64 + ":v1", "mine/app:" + "c" * 64):
        assert_one_line_error(bx(script_runner, "tag", image, hex_name),  # (docker's too)
                              "a 64-digit hexadecimal name reads as an image id")
    assert bx(script_runner, "images", "-q", "--no-trunc").stdout == before


def test_expose_is_in_the_config_and_p_publishes_it(script_runner: ScriptRunner,
                                                    image: str) -> None:
    created = bx(script_runner, "create", "--name", "exposing", "--expose", "8080",
                 "--expose", "9000-9001/udp", "-P", image, "true")
    assert created.returncode == 0, created.stderr
    shown = json.loads(bx(script_runner, "inspect", "exposing").stdout)[0]
    assert shown["Config"]["ExposedPorts"] == {"8080/tcp": {}, "9000/udp": {}, "9001/udp": {}}
    assert sorted(shown["HostConfig"]["PortBindings"]) == ["8080/tcp", "9000/udp", "9001/udp"]
    before = bx(script_runner, "ps", "-a", "-q").stdout
    assert_one_line_error(bx(script_runner, "create", "--expose", "80/sctp", image),
                          "invalid --expose '80/sctp': the protocol must be tcp or udp")
    assert bx(script_runner, "ps", "-a", "-q").stdout == before


def test_log_options_are_in_the_config_and_bad_ones_make_nothing(
        script_runner: ScriptRunner, image: str) -> None:
    created = bx(script_runner, "create", "--name", "logged", "--log-opt", "max-size=10m",
                 "--log-opt", "max-file=3", image, "true")
    assert created.returncode == 0, created.stderr
    shown = json.loads(bx(script_runner, "inspect", "logged").stdout)[0]
    assert shown["HostConfig"]["LogConfig"] == {
        "Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    before = bx(script_runner, "ps", "-a", "-q").stdout
    for args, says in ((["--log-driver", "gelf"], "log driver 'gelf' is not supported"),
                       (["--log-opt", "max-file=many"], "invalid --log-opt max-file")):
        assert_one_line_error(bx(script_runner, "create", *args, image), says)
    assert bx(script_runner, "ps", "-a", "-q").stdout == before


def test_inspect_type_looks_for_one_kind(script_runner: ScriptRunner, image: str) -> None:
    plant_box()
    as_image = bx(script_runner, "inspect", "--type", "image", "-f", "{{.Id}}", image)
    assert as_image.returncode == 0 and as_image.stdout.startswith("sha256:"), as_image.stderr
    assert_one_line_error(bx(script_runner, "inspect", "--type", "container", image),
                          f"no such box: {image}")
    assert_one_line_error(bx(script_runner, "inspect", "--type", "image", "planted"),
                          "no such image: planted")
    assert bx(script_runner, "inspect", "--type", "box", "-f", "{{.Name}}", "planted"
              ).stdout == "/planted\n"


def test_inspect_prints_what_it_found_and_names_what_it_did_not(
        script_runner: ScriptRunner) -> None:
    plant_box()
    both = bx(script_runner, "inspect", "planted", "nosuch")
    assert [r["id"] for r in json.loads(both.stdout)] == [BOX_ID]  # docker's way
    assert_one_line_error(both, "no such box: nosuch")
    two = bx(script_runner, "inspect", "gone1", "planted", "gone2")
    assert two.returncode == 125
    assert two.stderr.splitlines() == ["boxlite: no such box: gone1", "boxlite: no such box: gone2"]
    none = bx(script_runner, "inspect", "nosuch")
    assert none.stdout == "[]\n"
    assert_one_line_error(none, "no such box: nosuch")
    templated = bx(script_runner, "inspect", "-f", "{{.Name}}", "nosuch", "planted")
    assert templated.stdout == "/planted\n"
    assert_one_line_error(templated, "no such box: nosuch")


def test_inspect_has_dockers_state_for_its_templates(script_runner: ScriptRunner) -> None:
    """docker users' `{{.State.Status}}`, `{{.State.Running}}`, `{{.State.ExitCode}}`..."""
    state = plant_box(exit_code=3)
    state.started_at, state.finished_at = 1796000000.5, 1796000060.25
    store = BoxStore(home_paths())
    with store.lock(BOX_ID):
        store.write(state)
    out = bx(script_runner, "inspect", "-f", "{{.State.Status}} {{.State.Running}} "
             "{{.State.ExitCode}} {{.State.Pid}} {{.State.Paused}} {{.State.StartedAt}} "
             "{{.State.FinishedAt}}", "planted")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ("exited false 3 0 false 2026-11-30T00:53:20.500000Z "
                          "2026-11-30T00:54:20.250000Z\n")
    plant_box("c0ffee" + "2" * 58, name="fresh", status=Status.CREATED, exit_code=None)
    fresh = bx(script_runner, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} "
               "{{.State.StartedAt}}", "fresh")
    assert fresh.stdout == "created 0 0001-01-01T00:00:00Z\n"


def test_inspect_has_dockers_sections_for_its_templates(script_runner: ScriptRunner) -> None:
    """What docker users' scripts read: .Path .Args .Image .Config.Env .HostConfig.*
    .NetworkSettings.* .Mounts, in docker's meaning."""
    state = plant_box()
    state.config.process.env = ["A=1", "B=two"]
    state.config.process.cwd = "/srv"
    state.config.memory_mib, state.config.cpus, state.config.cpu_limit = 1024, 2, 1.5
    state.config.network.ports = [PortMapping(80, "tcp", "127.0.0.1", 8080)]
    state.config.mounts = [Mount("bind", "/host/dir", "/data", readonly=True)]
    state.config.read_only, state.config.tmpfs = True, ["/run:size=1m"]
    store = BoxStore(home_paths())
    with store.lock(BOX_ID):
        store.write(state)
    out = bx(script_runner, "inspect", "-f", "{{.Path}} {{.Args}} {{.Image}} {{.Config.Env}} "
             "{{.Config.WorkingDir}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} "
             "{{.HostConfig.ReadonlyRootfs}} {{index .HostConfig.Tmpfs \"/run\"}} "
             "{{json .HostConfig.PortBindings}} {{.HostConfig.Binds}} "
             "{{.HostConfig.RestartPolicy.Name}} [{{.NetworkSettings.IPAddress}}] "
             "{{json .Mounts}}", "planted")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "sh [-c echo hi] sha256:" + "a" * 64 + " [A=1 B=two] /srv 1073741824 1500000000 true "
        'size=1m {"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}]} [/host/dir:/data:ro] '
        'no [] [{"Type":"bind","Name":"","Source":"/host/dir","Destination":"/data",'
        '"Driver":"","Mode":"ro","RW":false,"Propagation":"rprivate"}]\n')
    # the JSON has docker's keys for docker's sections (jq '.[0].State.Running'), beside
    # boxlite's own record
    [record] = json.loads(bx(script_runner, "inspect", "planted").stdout)
    assert (record["State"]["Running"], record["State"]["ExitCode"], record["status"]) == (
        False, 0, "exited")
    assert record["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == "8080"
    assert (record["Config"]["Env"], record["config"]["cpus"]) == (["A=1", "B=two"], 2)


def test_a_box_whose_base_was_unpacked_again_is_refused_not_read_as_garbage(
        script_runner: ScriptRunner, image: str, tmp_path: Path) -> None:
    """A box's disk is an overlay on its image's unpacked ext4: one made again (its file
    deleted by hand, then another create) is another file system, and the box's changes
    would read as garbage there (tester AR: `sh` not found). start and export refuse."""
    assert bx(script_runner, "create", "--name", "old", image).returncode == 0
    base = Path(bx(script_runner, "inspect", "-f", "{{.config.rootfs_base}}", "old"
                   ).stdout.strip())
    base.unlink()
    gone = bx(script_runner, "start", "old")
    assert_one_line_error(gone, f"box old cannot be used: its disk is built on its image's "
                                f"unpacked root file system {base}, which is gone")
    assert "boxlite rm old" in gone.stderr
    assert bx(script_runner, "create", "--name", "new", image).returncode == 0  # (unpacked)
    assert base.is_file()
    for args in (["start", "old"], ["export", "old", "-o", str(tmp_path / "old.tar")],
                 ["clone", "old"], ["snapshot", "create", "old", "s1"]):  # (clones of it
        # would hold up the rm its hint names: tester AT)
        refused = bx(script_runner, *args)
        assert_one_line_error(refused, f"its image's root file system {base} was unpacked "
                                       "again since the box was made on it")
    assert not (tmp_path / "old.tar").exists()
    assert bx(script_runner, "ps", "-aq").stdout.count("\n") == 2  # (old and new alone)
    assert bx(script_runner, "rm", "old").returncode == 0


def test_config_volumes_are_the_anonymous_ones_as_dockers(script_runner: ScriptRunner,
                                                          image: str, tmp_path: Path) -> None:
    """docker's Config.Volumes: `-v /path` (and an image's VOLUMEs), not binds or named."""
    made = bx(script_runner, "create", "--name", "vols", "-v", "/cache", "-v", "named:/data",
              "-v", f"{tmp_path}:/host", image)
    assert made.returncode == 0, made.stderr
    assert bx(script_runner, "create", "--name", "plain", image).returncode == 0
    shown = bx(script_runner, "inspect", "-f", "{{json .Config.Volumes}}", "vols", "plain")
    assert shown.stdout == '{"/cache":{}}\nnull\n'
    # ps' MOUNTS: volume names and a bind's host path (not its target), cut to 15 as
    # docker's unless --no-trunc (tester AT)
    mounts = bx(script_runner, "ps", "-a", "-f", "name=^vols$", "--format", "{{.Mounts}}"
                ).stdout.strip().split(",")
    assert mounts[1:] == ["named", str(tmp_path)[:14] + "…"] and len(mounts[0]) == 15
    whole = bx(script_runner, "ps", "-a", "--no-trunc", "-f", "name=^vols$", "--format",
               "{{.Mounts}}").stdout.strip().split(",")
    assert whole[1:] == ["named", str(tmp_path)] and len(whole[0]) == 64
    # the image's VOLUMEs too (tester AT), as docker's
    plant_image(tmp_path, "localhost/vols:1", Volumes={"/data": {}, "/logs": {}})
    assert bx(script_runner, "create", "--name", "imgvols", "-v", "/x", "localhost/vols:1"
              ).returncode == 0
    shown = bx(script_runner, "inspect", "-f", "{{json .Config.Volumes}}", "imgvols")
    assert shown.stdout == '{"/data":{},"/logs":{},"/x":{}}\n'


def test_dns_search_and_options_are_kept_and_shown_as_dockers(script_runner: ScriptRunner,
                                                               image: str) -> None:
    created = bx(script_runner, "create", "--name", "resolver", "--dns-search", "a.example.",
                 "--dns-search", "b.example", "--dns-opt", "ndots:2", "--dns-option", "rotate",
                 image)
    assert created.returncode == 0, created.stderr
    shown = bx(script_runner, "inspect", "-f",
               "{{json .HostConfig.DnsSearch}} {{json .HostConfig.DnsOptions}}", "resolver")
    assert shown.stdout == '["a.example","b.example"] ["ndots:2","rotate"]\n'
    sysctl = bx(script_runner, "create", "--name", "tuned", "--sysctl", "net.core.somaxconn=1024",
                "--sysctl", "vm.overcommit_memory=1", image)
    assert sysctl.returncode == 0, sysctl.stderr
    assert bx(script_runner, "inspect", "-f", "{{json .HostConfig.Sysctls}}", "tuned").stdout == (
        '{"net.core.somaxconn":"1024","vm.overcommit_memory":"1"}\n')
    before = bx(script_runner, "ps", "-a", "-q").stdout
    for args, says in ((["--dns-search", "a b"], "invalid --dns-search 'a b': not a domain"),
                       (["--dns-option", "ndots:2 rotate"], "invalid --dns-option"),
                       (["--sysctl", "somaxconn=1"], "invalid --sysctl 'somaxconn=1'")):
        assert_one_line_error(bx(script_runner, "create", *args, image), says)
    assert bx(script_runner, "ps", "-a", "-q").stdout == before


def test_a_health_check_is_kept_and_shown_as_dockers(script_runner: ScriptRunner,
                                                     image: str) -> None:
    created = bx(script_runner, "create", "--name", "checked", "--health-cmd", "test -e /ok",
                 "--health-interval", "1m30s", "--health-retries", "5", image)
    assert created.returncode == 0, created.stderr
    shown = bx(script_runner, "inspect", "-f", "{{json .Config.Healthcheck}}", "checked")
    assert shown.stdout == ('{"Test":["CMD-SHELL","test -e /ok"],"Interval":90000000000,'
                            '"Retries":5}\n')  # (docker's: the defaults left out)
    off = bx(script_runner, "create", "--no-healthcheck", image)
    shown = bx(script_runner, "inspect", "-f", "{{json .Config.Healthcheck}}", off.stdout.strip())
    assert shown.stdout == '{"Test":["NONE"]}\n'
    bx(script_runner, "rm", off.stdout.strip())
    [record] = json.loads(bx(script_runner, "inspect", "checked").stdout)
    assert "Health" not in record["State"]  # (a box that never ran has no health yet)
    for health, listed in (("none", True), ("starting", False)):  # (docker's: none till it runs)
        found = bx(script_runner, "ps", "-a", "-q", "--no-trunc", "--filter", f"health={health}")
        assert (found.stdout == created.stdout) is listed
    before = bx(script_runner, "ps", "-a", "-q").stdout
    for args, says in (
            (["--no-healthcheck", "--health-cmd", "true"],
             "--no-healthcheck conflicts with the --health-* options"),
            (["--health-cmd", "true", "--health-interval", "30"],
             "invalid --health-interval '30': want a duration with its unit"),
            (["--health-retries", "-2"], "invalid --health-retries -2")):
        assert_one_line_error(bx(script_runner, "create", *args, image), says)
    assert bx(script_runner, "ps", "-a", "-q").stdout == before
    assert_one_line_error(bx(script_runner, "ps", "--filter", "health=sick"),
                          "invalid filter 'health=sick'")


def test_a_bad_commit_is_one_line_and_makes_no_image(script_runner: ScriptRunner,
                                                     image: str) -> None:
    plant_box()
    before = bx(script_runner, "images", "-q").stdout
    for args, says in (
            (["planted", "app", "-c", "RUN apt-get update"],
             "invalid --change 'RUN apt-get update': RUN is not one of"),
            (["planted", "app@sha256:" + "0" * 64], "named by a tag, not a digest"),
            (["nobox", "app"], "no such box: nobox")):
        assert_one_line_error(bx(script_runner, "commit", *args), says)
    assert bx(script_runner, "images", "-q").stdout == before


def test_inspect_splits_the_entrypoint_from_the_command(script_runner: ScriptRunner,
                                                        image: str) -> None:
    """docker's Config.Entrypoint and Config.Cmd (null when empty), not one argv."""
    for name, args, expected in (
            ("ep", ["--entrypoint", "/bin/echo", image, "hi"], '["/bin/echo"] ["hi"]\n'),
            ("cmd", [image], 'null ["sh"]\n')):
        created = bx(script_runner, "create", "--name", name, *args)
        assert created.returncode == 0, created.stderr
        shown = bx(script_runner, "inspect", "-f",
                   "{{json .Config.Entrypoint}} {{json .Config.Cmd}}", name)
        assert shown.stdout == expected


def test_a_box_larger_than_this_host_is_refused_at_start(script_runner: ScriptRunner,
                                                          home: Path) -> None:
    # (an imported box, made on a bigger host)
    state = plant_box(status=Status.CREATED, exit_code=None)
    state.config.cpus = 4096
    store = BoxStore(home_paths())
    with store.lock(BOX_ID):
        store.write(state)
    result = bx(script_runner, "start", "planted")
    assert_one_line_error(result, "box planted cannot start on this host: invalid --cpus 4096")
    [entry] = json.loads(bx(script_runner, "ps", "-a", "--format", "json").stdout)
    assert entry["status"] == "created"


def test_box_whose_shim_died_is_never_shown_running(script_runner: ScriptRunner) -> None:
    plant_box(status=Status.RUNNING, exit_code=None)
    assert bx(script_runner, "ps", "-q").stdout == ""
    [entry] = json.loads(bx(script_runner, "ps", "-a", "--format", "json").stdout)
    assert entry["status"] == "exited"
    assert "shim" in entry["error"]
    info = json.loads(bx(script_runner, "info", "--format", "json").stdout)
    assert info["boxes"] == {"total": 1, "running": 0, "exited": 1}


@pytest.mark.parametrize("status", [Status.RUNNING, Status.EXITED])
def test_a_rm_box_whose_shim_died_goes_at_the_next_listing(script_runner: ScriptRunner,
                                                           image: str, status: Status) -> None:
    """--rm's promise is kept when its shim could not keep it (killed, crashed), as
    docker's daemon removes such a container when it comes back."""
    state = plant_box(status=status)
    state.config.auto_remove = True
    other = plant_box(box_id="d" * 64, name="kept", status=status)  # (no --rm: it stays)
    store = BoxStore(home_paths())
    with store.lock(BOX_ID):
        store.write(state)
    assert json.loads(bx(script_runner, "ps", "-a", "--format", "json").stdout)[0]["id"] == other.id
    assert not store.box_dir(BOX_ID).exists()
    created = bx(script_runner, "create", "--name", "planted", image)
    assert created.returncode == 0, created.stderr  # (its name is free again)


def test_a_rm_box_its_starter_still_handles_is_not_taken_from_it(
        script_runner: ScriptRunner, home: Path) -> None:
    """A failed warm start of a --rm box is retried cold by the CLI that started it: a
    listing from another shell meanwhile leaves the box alone."""
    state = plant_box()
    state.config.auto_remove = True
    state.creator = ProcessRecord.current().to_json()  # (this test's process: alive)
    store = BoxStore(home_paths())
    with store.lock(BOX_ID):
        store.write(state)
    [entry] = json.loads(bx(script_runner, "ps", "-a", "--format", "json").stdout)
    assert entry["id"] == BOX_ID and store.box_dir(BOX_ID).exists()


@pytest.mark.parametrize("ref", [BOX_ID, BOX_ID[:12], "c0f", "planted"])
def test_rm_by_id_prefix_or_name(script_runner: ScriptRunner, home: Path, ref: str) -> None:
    plant_box()
    result = bx(script_runner, "rm", ref)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{ref}\n"
    assert box_dirs(home) == []
    assert names(home) == []
    assert json.loads(bx(script_runner, "ps", "-a", "--format", "json").stdout) == []


def test_ambiguous_prefix(script_runner: ScriptRunner, home: Path) -> None:
    plant_box()
    plant_box(box_id="c0ffee" + "2" * 58, name="second")
    assert_one_line_error(bx(script_runner, "rm", "c0ffee"), "ambiguous")
    assert len(box_dirs(home)) == 2
    # (`rm -f` takes only a missing box as done, not an ambiguous one)
    assert_one_line_error(bx(script_runner, "rm", "-f", "c0ffee"), "ambiguous")
    assert len(box_dirs(home)) == 2


# corrupt state -------------------------------------------------------------------------

@pytest.fixture
def corrupt_box(home: Path) -> Path:
    plant_box()
    path = home / "boxes" / BOX_ID / "state.json"
    path.write_text('{"id": "' + BOX_ID + '", "name": "planted", "conf')
    return path


def test_ps_survives_a_corrupt_state_file(script_runner: ScriptRunner, corrupt_box: Path
                                          ) -> None:
    other = "d00d" + "0" * 60
    plant_box(box_id=other, name="healthy")
    result = bx(script_runner, "ps", "-a")
    assert result.returncode == 0
    assert "healthy" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("boxlite: warning:")]
    assert len(warnings) == 1 and str(corrupt_box) in warnings[0]
    as_json = bx(script_runner, "ps", "-a", "--format", "json")
    assert as_json.returncode == 0
    assert [b["id"] for b in json.loads(as_json.stdout)] == [other]
    assert sorted(bx(script_runner, "ps", "-aq", "--no-trunc").stdout.split()) == sorted(
        [other, BOX_ID])
    assert str(corrupt_box) in as_json.stderr


def test_rm_without_force_explains_the_corrupt_state(script_runner: ScriptRunner,
                                                     corrupt_box: Path) -> None:
    result = bx(script_runner, "rm", BOX_ID[:12])
    assert result.returncode == 125
    assert str(corrupt_box) in result.stderr
    assert f"boxlite rm -f {BOX_ID[:12]}" in result.stderr
    assert corrupt_box.exists()


@pytest.mark.parametrize("ref", [BOX_ID, BOX_ID[:8], "planted"])
def test_rm_force_removes_a_corrupt_box(script_runner: ScriptRunner, corrupt_box: Path,
                                        home: Path, ref: str) -> None:
    result = bx(script_runner, "rm", "-f", ref)
    assert result.returncode == 0, result.stderr
    assert box_dirs(home) == []
    assert names(home) == []
    after = bx(script_runner, "ps", "-a")
    assert after.returncode == 0 and after.stderr == ""
    assert len(after.stdout.splitlines()) == 1


@pytest.fixture
def stateless_box(home: Path) -> Path:
    """A box whose state file is gone (deleted by hand, or a create killed before it
    wrote it), a while ago."""
    plant_box()
    box_dir = home / "boxes" / BOX_ID
    (box_dir / "state.json").unlink()
    old = time.time() - 60
    os.utime(box_dir / "disks", (old, old))
    return box_dir


def test_a_box_without_its_state_file_is_said_and_rm_f_removes_it(
        script_runner: ScriptRunner, stateless_box: Path, home: Path) -> None:
    """(it was listed by nothing, `rm -f` said nothing and removed nothing, and its name
    stayed taken: "already in use by box ...", a box every command called missing)"""
    listed = bx(script_runner, "ps", "-a")
    assert f"box {BOX_ID[:12]} has no state file" in listed.stderr
    # (ps -aq lists it: a script's `rm -f $(boxlite ps -aq)` cleans it up too)
    assert bx(script_runner, "ps", "-aq").stdout == BOX_ID[:12] + "\n"
    assert bx(script_runner, "ps", "-q").stdout == ""
    refused = bx(script_runner, "rm", "planted")
    assert_one_line_error(refused, f"box {BOX_ID[:12]} has no state file")
    assert f"boxlite rm -f {BOX_ID[:12]}" in refused.stderr and stateless_box.exists()
    removed = bx(script_runner, "rm", "-f", "planted")
    assert removed.returncode == 0, removed.stderr
    assert box_dirs(home) == [] and names(home) == []
    assert bx(script_runner, "ps", "-a").stderr == ""


def test_a_box_being_created_is_not_taken_for_one_without_state(home: Path) -> None:
    """(a create writes its state file just after it makes the directory)"""
    plant_box()
    (home / "boxes" / BOX_ID / "state.json").unlink()
    with pytest.raises(NoSuchBox):
        BoxStore(home_paths()).read(BOX_ID)


def test_corrupt_image_index_is_one_line(script_runner: ScriptRunner, home: Path) -> None:
    (home / "images").mkdir(parents=True, exist_ok=True)
    (home / "images" / "repositories.json").write_text("{not json")
    result = bx(script_runner, "run", "debian", "true")
    assert_one_line_error(result, "repositories.json")


# logs ------------------------------------------------------------------------------------

@pytest.mark.script_launch_mode("subprocess")
def test_logs_split_streams_and_ignore_a_torn_tail(script_runner: ScriptRunner,
                                                   home: Path) -> None:
    plant_box()
    with open(home / "boxes" / BOX_ID / "container.log", "wb") as f:
        write_frame(f, 0, b"out 1\n")
        write_frame(f, 1, b"err 1\n")
        write_frame(f, 0, b"out 2\n")
        f.write(b"\x00\x00\x00\x10tor")  # the shim died mid-write
    result = bx(script_runner, "logs", "planted")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "out 1\nout 2\n"
    assert result.stderr == "err 1\n"
    for tail, out in (("-1", "out 1\nout 2\n"), ("1", "out 2\n"), ("0", "")):  # (-1: all)
        assert bx(script_runner, "logs", "--tail", tail, "planted").stdout == out
    assert_one_line_error(bx(script_runner, "logs", "--tail", "abc", "planted"),
                          "invalid --tail 'abc': a number of lines, or 'all'")


@pytest.mark.script_launch_mode("subprocess")
def test_logs_timestamps_and_time_window(script_runner: ScriptRunner, home: Path) -> None:
    """-t puts each line's receiving time before it (a line cut across records keeps its
    first piece's), --since/--until pick by that time, and a bad time is one line."""
    plant_box()
    writer = LogWriter(home / "boxes" / BOX_ID / "container.log", max_bytes=1 << 20)
    base = 1_700_000_000 * 10**9  # 2023-11-14T22:13:20Z
    writer.write(0, b"one\ntw", ns=base)
    writer.write(0, b"o\n", ns=base + 5)
    writer.write(1, b"late\n", ns=base + 120 * 10**9)
    writer.close()
    result = bx(script_runner, "logs", "-t", "planted")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("2023-11-14T22:13:20.000000000Z one\n"
                             "2023-11-14T22:13:20.000000000Z two\n")
    assert result.stderr == "2023-11-14T22:15:20.000000000Z late\n"
    since = bx(script_runner, "logs", "--since", "2023-11-14T22:14:00Z", "planted")
    assert (since.stdout, since.stderr) == ("", "late\n")
    until = bx(script_runner, "logs", "--until", "1700000060", "planted")
    assert (until.stdout, until.stderr) == ("one\ntwo\n", "")
    recent = bx(script_runner, "logs", "--since", "10m", "planted")  # (all of it years ago)
    assert (recent.stdout, recent.stderr) == ("", "")
    bad = bx(script_runner, "logs", "--since", "yesterday", "planted")
    assert_one_line_error(bad, "invalid --since 'yesterday'")


def test_ps_escapes_what_a_box_record_holds(script_runner: ScriptRunner) -> None:
    """An imported box's image and command are anyone's strings: a table never passes
    their escape sequences to the terminal (JSON escapes them by itself)."""
    state = plant_box()
    state.config.image = "\x1b]0;pwned\x07evil"
    state.config.process.argv = ["\x1b[2J\x1b[31mRED"]
    store = BoxStore(home_paths())
    with store.lock(BOX_ID):
        store.write(state)
    result = bx(script_runner, "ps", "-a", "--no-trunc")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b]0;pwned\\x07evil" in result.stdout
    assert "\\x1b[2J\\x1b[31mRED" in result.stdout


def test_logs_to_a_stdout_that_cannot_be_written_says_so(home: Path) -> None:
    """`logs BOX > /dev/full`: the output's failure, not a full disk's."""
    plant_box()
    writer = LogWriter(home / "boxes" / BOX_ID / "container.log", max_bytes=1 << 20)
    writer.write(0, b"a line\n")
    writer.close()
    boxlite = shutil.which("boxlite", path=str(Path(sys.executable).parent))
    assert boxlite is not None
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([boxlite, "logs", "planted"], stdout=full, stderr=subprocess.PIPE,
                              check=False, timeout=60)
    assert (proc.returncode, proc.stderr.decode()) == (
        125, "boxlite: cannot write to standard output: No space left on device\n")


def test_logs_of_a_box_without_output(script_runner: ScriptRunner) -> None:
    plant_box()
    result = bx(script_runner, "logs", "planted")
    assert (result.returncode, result.stdout) == (0, "")


@pytest.mark.parametrize("answer", ["", "n\n", "y\n"], ids=["eof", "no", "yes"])
def test_prune_asks_and_the_end_of_input_is_a_no(script_runner: ScriptRunner, home: Path,
                                                  answer: str) -> None:
    """A script's `boxlite prune </dev/null` is declined (exit 0), not an interrupt (130)."""
    plant_box()
    result = script_runner.run(["boxlite", "prune"], stdin=io.StringIO(answer),
                               print_result=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Remove all stopped boxes? [y/N]: ")
    assert box_dirs(home) == ([] if answer == "y\n" else [BOX_ID])


def test_prune_prints_the_ids_and_the_space_it_gave_back(script_runner: ScriptRunner,
                                                         home: Path) -> None:
    plant_box()
    (home / "boxes" / BOX_ID / "disk.img").write_bytes(os.urandom(1 << 20))
    result = bx(script_runner, "prune", "-f")
    assert result.returncode == 0, result.stderr
    # (docker's, all on standard output: a script's `| grep reclaimed` finds it)
    assert re.fullmatch(f"Deleted boxes:\n{BOX_ID}\n\n"
                        r"Total reclaimed space: 1\.0[5-9]MB\n", result.stdout), result.stdout
    assert box_dirs(home) == []
    again = bx(script_runner, "prune", "-f")
    assert (again.stdout, again.stderr) == ("Total reclaimed space: 0B\n", "")


def test_system_prune_and_df_and_volume_prune(script_runner: ScriptRunner, home: Path,
                                              image: str) -> None:
    """docker's system prune: stopped boxes, dangling images, with --volumes anonymous
    volumes no box uses; named ones stay (volume prune -a takes them); df counts."""
    kept = bx(script_runner, "create", "--name", "keeps", "-v", "named:/n", "-v", "/anon",
              image)
    assert kept.returncode == 0, kept.stderr
    assert bx(script_runner, "volume", "create", "spare").returncode == 0
    anonymous = bx(script_runner, "volume", "create").stdout.strip()  # (anonymous: no name)
    (home / "volumes" / anonymous / "_data" / "blob").write_bytes(os.urandom(1 << 20))
    # (a second image sharing the first one's layer: counted once, as on the disk)
    plant_image(home.parent / "second", "localhost/tiny:2", Labels={"second": "1"})
    template = home / "cache" / "templates" / "k"
    template.mkdir(parents=True)
    (template / "ram.img").write_bytes(b"r" * 8192)
    stale = home / "staging" / "import-dead"  # (a killed import's: no owner)
    stale.mkdir(parents=True)
    (stale / "disk").write_bytes(b"d" * 8192)
    os.utime(stale, (1, 1))
    df = {r["type"]: r for r in json.loads(
        bx(script_runner, "system", "df", "--format", "json").stdout)}
    assert (df["Boxes"]["total"], df["Images"]["total"], df["Local Volumes"]["total"],
            df["Local Volumes"]["active"]) == (1, 2, 4, 2)
    images_on_disk = sum(f.stat().st_blocks * 512 for f in (home / "images").rglob("*"))
    assert df["Images"]["size"] == images_on_disk
    assert 0 < df["Images"]["reclaimable"] < df["Images"]["size"]  # (tiny:2's own blobs)
    assert (df["Warm-start Templates"]["total"], df["Warm-start Templates"]["size"]) == (
        1, df["Warm-start Templates"]["reclaimable"])
    assert df["Warm-start Templates"]["size"] >= 8192
    # (the created box uses its volumes: only the unnamed spare one goes)
    pruned = bx(script_runner, "volume", "prune", "-f")
    assert len(anonymous) == 64  # (its 1 MiB of data:)
    assert pruned.stdout == f"Deleted volumes:\n{anonymous}\n\nTotal reclaimed space: 1.05MB\n"
    declined = script_runner.run(["boxlite", "system", "prune", "--volumes"],
                                 stdin=io.StringIO(""), print_result=False)
    assert declined.returncode == 0 and declined.stdout.startswith("This will remove:")
    assert len(box_dirs(home)) == 1
    done = bx(script_runner, "system", "prune", "-f", "--volumes")
    assert done.returncode == 0, done.stderr
    assert "Deleted boxes:" in done.stdout and box_dirs(home) == []
    assert not stale.exists() and not template.exists()
    names = bx(script_runner, "volume", "ls", "-q").stdout.split()
    assert sorted(names) == ["named", "spare"]  # (the box's anonymous one went with it)
    assert bx(script_runner, "volume", "prune", "-a", "-f").stdout.split("\n\n")[0] == \
        "Deleted volumes:\nnamed\nspare"


def test_dockers_container_group_takes_the_box_commands(script_runner: ScriptRunner,
                                                       home: Path) -> None:
    plant_box()
    assert bx(script_runner, "container", "ls", "-a", "-q").stdout == BOX_ID[:12] + "\n"
    assert bx(script_runner, "container", "rm", "planted").returncode == 0
    assert box_dirs(home) == []
    listed = [line.split()[0] for line in bx(script_runner, "--help").stdout.splitlines()
              if line.startswith("  ") and line.split()]
    assert "ps" in listed and "container" not in listed  # (taken, not listed)


def test_a_template_failing_on_one_box_prints_nothing(script_runner: ScriptRunner) -> None:
    """docker renders the whole listing before printing it: a script gets the error alone."""
    plant_box()
    plant_box("c0ffee" + "2" * 58, name="fresh", status=Status.CREATED, exit_code=None)
    result = bx(script_runner, "ps", "-a", "--format",
                '{{.Names}} {{if eq .State "exited"}}{{.Nope}}{{end}}')
    assert_one_line_error(result, "no field 'Nope'")
    assert result.stdout == ""
    table = bx(script_runner, "ps", "-a", "-f", "name=planted", "--format",
               "table {{.Names}}\\n{{.State}}").stdout  # (a newline ends a row)
    assert table.split() == ["NAMES", "STATE", "planted", "exited"]


@pytest.mark.parametrize("command", [["ps"], ["images"], ["volume", "ls"],
                                     ["stats", "--no-stream"], ["inspect", "--type", "box"]])
def test_a_broken_template_fails_with_nothing_to_list(script_runner: ScriptRunner,
                                                      command: list[str]) -> None:
    """A typo fails at once, as docker's, not only once there is something to list."""
    if command[0] == "inspect":
        plant_box()
        command = [*command, "planted"]
    result = bx(script_runner, *command, "--format", "{{.Names")
    assert_one_line_error(result, "an action is not closed")
    assert result.stdout == ""


def test_ps_no_trunc_shows_whole_ids_and_commands(script_runner: ScriptRunner,
                                                  home: Path) -> None:
    state = plant_box()
    state.config.process.argv = ["sh", "-c", "echo a rather long command line"]
    with BoxStore(home_paths()).lock(BOX_ID):
        BoxStore(home_paths()).write(state)
    short = bx(script_runner, "ps", "-a")
    assert BOX_ID[:12] in short.stdout and BOX_ID not in short.stdout and "…" in short.stdout
    whole = bx(script_runner, "ps", "-a", "--no-trunc")
    assert BOX_ID in whole.stdout and "'echo a rather long command line'" in whole.stdout
    assert bx(script_runner, "ps", "-aq", "--no-trunc").stdout == BOX_ID + "\n"


def test_exec_in_a_box_waiting_for_its_restart_policy_says_so(script_runner: ScriptRunner,
                                                              home: Path) -> None:
    """docker's "is restarting, wait until the container is running", not "start it"."""
    from boxlite_cli.state.pidfile import ProcessRecord

    state = plant_box(exit_code=1)
    with BoxStore(home_paths()).lock(state.id):
        state.config.restart = "always"
        state.restarter = ProcessRecord.current().to_json()  # (a restarter that lives)
        BoxStore(home_paths()).write(state)
    result = bx(script_runner, "exec", "planted", "true")
    assert_one_line_error(result, "box planted is restarting (its --restart policy)")
    assert "wait until it runs again" in result.stderr
    with BoxStore(home_paths()).lock(state.id):
        state.restarter = None
        BoxStore(home_paths()).write(state)
    result = bx(script_runner, "exec", "planted", "true")
    assert_one_line_error(result, "box planted is not running")
    assert "start it: boxlite start planted" in result.stderr


def test_update_changes_a_stopped_boxs_policy_and_size(script_runner: ScriptRunner,
                                                       home: Path) -> None:
    """docker's update on a box that is not running: the values are kept for its next
    start; what cannot be is refused in one line, the box left as it was."""
    import json as json_

    state = plant_box()
    done = bx(script_runner, "update", "--restart", "on-failure:3", "--cpus", "0.5", "-m",
              "300m", "--pids-limit", "-1", "planted")
    assert (done.returncode, done.stdout, done.stderr) == (0, "planted\n", "")
    config = BoxStore(home_paths()).read(state.id).config
    assert (config.restart, config.cpus, config.cpu_limit, config.memory_mib,
            config.pids_limit) == ("on-failure:3", 1, 0.5, 300, 0)
    for args, says in ((["planted"], "nothing to update"),
                       (["--restart", "sometimes", "planted"], "invalid --restart"),
                       (["-m", "1m", "planted"], "a box needs at least"),
                       (["--cpus", "4096", "planted"], "invalid --cpus")):
        assert_one_line_error(bx(script_runner, "update", *args), says)
    # a box with a memory checkpoint keeps its size (the checkpoint restores into it)
    disks = home / "boxes" / state.id / "disks"
    disks.mkdir(parents=True, exist_ok=True)
    (disks / "snapshots.json").write_text(json_.dumps({"snapshots": [
        {"name": "ck", "file": "x", "created": 0, "memory": "mem"}]}))
    for args in (["--cpus", "2"], ["--pids-limit", "100"]):
        assert_one_line_error(bx(script_runner, "update", *args, "planted"),
                              "box planted has memory checkpoints (ck): its CPUs, memory "
                              "and pids limit stay")
    # (what it has already is no change)
    assert bx(script_runner, "update", "-m", "300m", "--cpus", "0.5", "planted").returncode == 0
    assert bx(script_runner, "update", "--restart", "no", "planted").returncode == 0
    config = BoxStore(home_paths()).read(state.id).config
    assert (config.restart, config.cpus, config.memory_mib) == ("no", 1, 300)
    with BoxStore(home_paths()).lock(state.id):
        removed_at_end = BoxStore(home_paths()).read(state.id)
        removed_at_end.config.auto_remove = True
        BoxStore(home_paths()).write(removed_at_end)
    assert_one_line_error(bx(script_runner, "update", "--restart", "always", "planted"),
                          "box planted is removed when it ends (--rm)")


def test_save_into_a_full_standard_output_says_so(image: str) -> None:
    """(it gave the data directory's hint: the full disk was where the user sent it)"""
    with open("/dev/full", "wb") as full:
        done = subprocess.run([shutil.which("boxlite") or "boxlite", "save", image],
                              stdout=full, stderr=subprocess.PIPE, timeout=120)
    assert (done.returncode, done.stderr) == (
        125, b"boxlite: cannot write to standard output: No space left on device\n")


def test_an_empty_output_path_is_standard_output(image: str) -> None:
    """docker's `save -o ""` / `export -o ""` (it was ". is a directory")."""
    done = subprocess.run([shutil.which("boxlite") or "boxlite", "save", "-o", "", image],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        assert "index.json" in tar.getnames()
    exported = subprocess.run([shutil.which("boxlite") or "boxlite", "export", "-o", "", "gone"],
                              capture_output=True, timeout=120)
    assert (exported.returncode, exported.stderr) == (125, b"boxlite: no such box: gone\n")
