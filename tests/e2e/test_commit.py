"""commit and diff: a box's changes as a new image's layer, and as docker diff lists
them, read from a real box's disk."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.e2e.conftest import IMAGE, bx

CHANGES = ("echo hello > /root/new.txt; echo changed >> /etc/debian_version; "
           "rm -rf /usr/share/doc/bash /etc/motd; mkdir -p /opt/app; echo app > /opt/app/x; "
           "ln /opt/app/x /opt/app/y; ln /usr/bin/perl /root/perl-link; "
           "echo in-volume > /data/v; echo box-wrote-this > /etc/hosts; mkdir -p /tmp/t; "
           "cp -p /etc/issue.net /tmp/r; sed -i s/Debian/DEBIAN/ /etc/issue.net; "
           "touch -r /tmp/r /etc/issue.net; "
           "touch \"/tmp/e$(printf '\\033]0;x\\007\\nD x')\"; "
           "cp /bin/true /root/capped; python3 -c 'import os; os.setxattr(\"/root/capped\", "
           "\"security.capability\", bytes.fromhex(\"0100000200200000\" + 24 * \"0\"))'; "
           "echo ready; sleep 600")

# What `diff` lists for CHANGES: the volume's mount point but not its file, nor the
# box's own /etc/hosts; a directory something changed in as changed; a file rewritten
# with its size and time kept (issue.net), and one hard-linked anew (perl, with its
# other name), as overlayfs copies them up; a name with an escape and a newline, written
# as escapes (it would set the terminal's title, and forge a line).
ODD = "/tmp/e\x1b]0;x\x07\nD x"
DIFF = ["A /data", "C /etc", "C /etc/debian_version", "C /etc/issue.net", "D /etc/motd",
        "C /opt", "A /opt/app", "A /opt/app/x", "A /opt/app/y", "C /root", "A /root/capped",
        "A /root/new.txt", "A /root/perl-link", "C /tmp", "A /tmp/e\\x1b]0;x\\x07\\x0aD x",
        "A /tmp/r", "A /tmp/t", "C /usr",
        "C /usr/bin", "C /usr/bin/perl", "C /usr/bin/perl5.36.0", "C /usr/share",
        "C /usr/share/doc", "D /usr/share/doc/bash"]


def image_record(name: str) -> dict[str, object]:
    shown = bx("image", "inspect", name)
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout)[0])


def test_a_running_box_commits_what_it_changed_and_the_image_runs_it(e2e_home: Path) -> None:
    run = bx("run", "-d", "--name", "tocommit", "-v", "/data", "-e", "FROM_BOX=1", IMAGE,
             "sh", "-c", CHANGES)
    assert run.returncode == 0, run.stderr
    try:
        deadline = time.monotonic() + 120
        while b"ready" not in bx("logs", "tocommit").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        listed = bx("diff", "tocommit")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.decode().splitlines() == DIFF  # (sorted, as docker's)
        as_json = json.loads(bx("diff", "--format", "json", "tocommit").stdout)
        assert as_json[:2] == [{"Path": "/data", "Kind": 1}, {"Path": "/etc", "Kind": 0}]
        assert {"Path": "/etc/motd", "Kind": 2} in as_json and len(as_json) == len(DIFF)
        assert {"Path": ODD, "Kind": 1} in as_json  # (JSON holds the name as it is)
        made = bx("commit", "-m", "first", "-a", "me <me@example.com>", "-c",
                  'CMD ["cat", "/root/new.txt"]', "-c", "ENV MODE=prod", "tocommit",
                  "localhost/committed:1")
        assert made.returncode == 0, made.stderr
        record = image_record("localhost/committed:1")
        assert made.stdout.decode().strip() == record["Id"]
        assert (record["Comment"], record["Author"]) == ("first", "me <me@example.com>")
        base = image_record(IMAGE)
        assert len(record["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1  # type: ignore[index]
        # its size before any unpack: the base's layers' files and the new layer's (it was
        # the base's tar size, so one layer had two sizes)
        sizes = [[r["size"] for r in json.loads(bx("history", "--format", "json", ref).stdout)
                  if r["size"]] for ref in ("localhost/committed:1", IMAGE)]
        assert sizes[0][1:] == sizes[1] and 0 < sizes[0][0] < 10 << 20, sizes
        assert record["Size"] == sum(sizes[0])
        # the new layer is gzipped, as docker's are (pushed as it is stored)
        [row] = [r for r in json.loads(bx("images", "--format", "json").stdout)
                 if r["reference"] == "localhost/committed:1"]
        blobs = e2e_home / "images" / "blobs" / "sha256"
        manifest = json.loads((blobs / row["digest"].split(":")[1]).read_bytes())
        top = manifest["layers"][-1]
        assert top["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        assert (blobs / top["digest"].split(":")[1]).read_bytes()[:2] == b"\x1f\x8b"
        config = record["Config"]
        assert config["Cmd"] == ["cat", "/root/new.txt"]  # type: ignore[index]
        assert {"FROM_BOX=1", "MODE=prod"} <= set(config["Env"])  # type: ignore[index]
        assert bx("exec", "tocommit", "cat", "/root/new.txt").stdout == b"hello\n"  # (thawed)

        shown = bx("run", "--rm", "localhost/committed:1")
        assert shown.stdout == b"hello\n", shown.stderr
        script = ("ls /usr/share/doc/bash /etc/motd 2>&1 | wc -l; cat /opt/app/y; "
                  "tail -1 /etc/debian_version; ls -A /data; cmp /usr/bin/perl /root/perl-link "
                  "&& echo same; grep -c box-wrote-this /etc/hosts; ls -d /tmp/t; "
                  "python3 -c 'import os; print(os.getxattr(\"/root/capped\", "
                  "\"security.capability\")[:8].hex())'; head -c 6 /etc/issue.net")
        checked = bx("run", "--rm", "localhost/committed:1", "sh", "-c", script)
        assert checked.stdout.decode().split("\n") == [
            "2", "app", "changed", "same", "0", "/tmp/t", "0100000200200000", "DEBIAN"
        ], checked.stderr
        # (the volume's file and the box's own /etc/hosts stay out, as docker's; setcap's
        # capability goes with its file)
    finally:
        bx("rm", "-f", "tocommit")
        bx("rmi", "localhost/committed:1")


def test_a_stopped_box_commits_and_no_change_makes_no_layer() -> None:
    created = bx("create", "--name", "unchanged", IMAGE, "true")
    assert created.returncode == 0, created.stderr
    try:
        listed = bx("diff", "unchanged")  # (a stopped box's disk, read without its command)
        assert (listed.returncode, listed.stdout) == (0, b""), listed.stderr
        made = bx("commit", "unchanged", "localhost/same:1")
        assert made.returncode == 0, made.stderr
        assert image_record("localhost/same:1")["RootFS"] == image_record(IMAGE)["RootFS"]
        assert bx("inspect", "-f", "{{.State.Status}}", "unchanged").stdout == b"created\n"
    finally:
        bx("rm", "-f", "unchanged")
        bx("rmi", "localhost/same:1")
