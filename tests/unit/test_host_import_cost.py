"""What importing a verb's module pulls in: the start path of `boxlite run` stays light.

Each of these modules costs milliseconds to import and is needed only by some runs
(a pull, an unpack, a cloud-hypervisor VM, a progress bar) or only once the box is up
(gRPC, to attach): none of them may be imported just to parse `boxlite run ...`.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

NOT_ON_START_PATH = (
    "httpx",  # registries: pull only
    "zstandard",  # layer decompression: unpack only
    "tarfile",
    "boxlite_cli.oci.unpack",
    "boxlite_cli.disks.ext4",
    "concurrent.futures",  # parallel layer downloads
    "rich",  # progress bars and spinners, when shown
    "http.client",  # cloud-hypervisor's REST API
    "boxlite_cli.vmm.cloudhv",
    "boxlite_cli.vmm.chapi",
    "asyncio",
    "grpc",  # the agent: imported once the box runs
    "google.protobuf",
    "boxlite_cli.agent.client",
    "boxlite_cli.runtime.session",
    "boxlite_cli.runtime.snapshots",
    "traceback",  # --debug only
)


def imported_by(*modules: str) -> set[str]:
    code = f"import sys, {', '.join(modules)}; print(sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(ast.literal_eval(out.strip().splitlines()[-1]))


@pytest.mark.parametrize("verb", ["run", "create", "start", "exec", "ps"])
def test_verb_import_stays_light(verb: str) -> None:
    loaded = imported_by("boxlite_cli.cli.app", f"boxlite_cli.cli.{verb}")
    assert f"boxlite_cli.cli.{verb}" in loaded
    heavy = sorted(m for m in NOT_ON_START_PATH if m in loaded)
    assert heavy == [], f"`boxlite {verb}` imports {heavy} at start-up"


def test_runtime_import_stays_light() -> None:
    loaded = imported_by("boxlite_cli.runtime.runtime")
    heavy = sorted(m for m in NOT_ON_START_PATH if m in loaded)
    assert heavy == [], f"boxlite_cli.runtime.runtime imports {heavy}"
