"""docker's --security-opt (state/securityopt.py): what a box's VM gives a meaning."""

from __future__ import annotations

import pytest

from boxlite_cli.errors import UsageError
from boxlite_cli.state.securityopt import no_new_privileges


@pytest.mark.parametrize(("options", "expected"), [
    ([], False),
    (["no-new-privileges"], True),
    (["no-new-privileges:true"], True),
    (["no-new-privileges=true"], True),
    (["no-new-privileges=TRUE"], True),
    (["no-new-privileges:t"], True),
    (["no-new-privileges=False"], False),
    (["no-new-privileges:false"], False),
    (["no-new-privileges", "no-new-privileges:false"], False),  # (the last one wins)
    (["seccomp=unconfined", "apparmor=unconfined", "label=disable"], False),
    (["seccomp:unconfined", "label:disable"], False),  # (docker's older spelling)
])
def test_the_options_a_box_takes(options: list[str], expected: bool) -> None:
    assert no_new_privileges(options) is expected


@pytest.mark.parametrize("option", ["seccomp=/p.json", "apparmor=docker-default",
                                    "label=type:svirt", "no-new-privileges:maybe", "no-new-privileges=yes",
                                    "bogus",
                                    "systempaths=unconfined"])
def test_an_option_that_would_not_be_applied_is_refused(option: str) -> None:
    with pytest.raises(UsageError) as refused:
        no_new_privileges([option])
    assert refused.value.message.startswith(f"invalid --security-opt {option!r}: a box takes")
