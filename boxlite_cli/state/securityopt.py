"""docker's `--security-opt`, as far as a box's VM gives it a meaning.

`no-new-privileges` (also `:true`/`=true`, or `:false`): no process of the box gains
privileges by executing a set-uid or file-capability program (PR_SET_NO_NEW_PRIVS, set
by the guest's exec helper on every process). `seccomp=unconfined`,
`apparmor=unconfined` and `label=disable` are taken for docker's sake: a box's processes
have no seccomp or AppArmor profile nor SELinux label (its VM is their boundary). Any
other option (a profile of either) is refused: it would not be applied.
"""

from __future__ import annotations

from collections.abc import Iterable

from boxlite_cli.errors import UsageError

NO_NEW_PRIVILEGES = "no-new-privileges"
AS_IS = {"seccomp=unconfined", "apparmor=unconfined", "label=disable"}
# (docker parses the value with Go's strconv.ParseBool)
TRUE = ("1", "t", "T", "TRUE", "true", "True")
FALSE = ("0", "f", "F", "FALSE", "false", "False")


def no_new_privileges(options: Iterable[str]) -> bool:
    """Whether `options` ask for no-new-privileges (the last of it wins); UsageError
    names an option that cannot be applied."""
    wanted = False
    for option in options:
        text = option.replace(":", "=", 1)
        key, eq, value = text.partition("=")
        if key == NO_NEW_PRIVILEGES and (not eq or value in TRUE + FALSE):
            wanted = not eq or value in TRUE
        elif text not in AS_IS:
            raise UsageError(f"invalid --security-opt {option!r}: a box takes "
                             "no-new-privileges[:true|false], and seccomp=unconfined, "
                             "apparmor=unconfined, label=disable (it has no profile of "
                             "either: its VM is the boundary)")
    return wanted
