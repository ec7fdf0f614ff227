"""Every test gets its own empty boxlite home; unit and CLI tests get no guest payload.

A test that needs a payload (or another home) sets the variable itself with
`monkeypatch.setenv`; the e2e tests have their own conftest in tests/e2e/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Variables of the developer's shell that would change what a test sees.
_LEAKY_ENV = ("BOXLITE_DEBUG", "BOXLITE_ACCEL")


@pytest.fixture(autouse=True)
def _isolated_home(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("BOXLITE_HOME", str(home))
    # The `boxlite` console script installed next to this Python comes first on PATH.
    bindir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join([bindir, os.environ.get("PATH", "")]))
    if "e2e" not in Path(str(request.node.path)).parts:
        monkeypatch.setenv("BOXLITE_PAYLOAD", str(home / "no-such-payload"))
        # Sockets of deep test directories go under here, not the host's /tmp/bl-UID
        # (which would keep them: pytest cleans its own temporary directories).
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
        for name in _LEAKY_ENV:
            monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def home(_isolated_home: Path) -> Path:
    """The boxlite home of this test (`$BOXLITE_HOME`)."""
    return _isolated_home
