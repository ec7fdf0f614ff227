"""Typed errors of the boxlite library.

Every error a user can cause or meet is one of these; the CLI maps them to one
line on stderr and an exit code in a single place (`boxlite_cli.cli.errors`).
"""

from __future__ import annotations

# The exit code of an exec whose box stopped under it in order (stop, rm -f, its main
# process ended): its process was killed with the box, as docker's exec says (SIGKILL).
KILLED_WITH_THE_BOX = 128 + 9


class Detached(Exception):
    """The detach keys were typed: the process runs on without this command, which
    says so as docker's does ("read escape sequence") and exits 0."""


class Interrupted(BaseException):
    """A signal that ends this command (SIGTERM, SIGHUP), as KeyboardInterrupt does
    SIGINT: the command's clean-up runs, and the exit code is 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class BoxliteError(Exception):
    """Base of all boxlite errors. `hint` is the fix, when there is one."""

    exit_code = 125

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(BoxliteError):
    """The user asked for something malformed (bad flag value, bad spec)."""


class NotFound(BoxliteError):
    """A box, image or other named thing does not exist."""


class NoSuchBox(NotFound):
    """No box has that name, id or id prefix (`rm -f` takes it as done, as docker does)."""


class NoSuchVolume(NotFound):
    """No volume has that name (`volume rm -f` takes it as done, as docker does)."""


class Conflict(BoxliteError):
    """The request conflicts with the current state (name taken, box running...)."""


class AlreadyRunning(Conflict):
    """A start of a box that runs already (`boxlite start` takes it as done, as docker
    does)."""


class StateCorrupt(BoxliteError):
    """A state file on disk cannot be read."""

    box_id: str | None = None  # the box's, where it is a box's state file


class ImageError(BoxliteError):
    """An image could not be found, loaded or unpacked."""


class PayloadError(BoxliteError):
    """The guest payload (kernel, initramfs, agent root) is missing or broken."""


class VmError(BoxliteError):
    """The VM failed to start, boot or answer."""


class OutputUnwritable(BoxliteError):
    """Standard output (a file the user redirected it to) refused a write: said as its,
    not as the data directory's (a full disk there is not boxlite's)."""

    def __init__(self, error: OSError, what: str = "standard output") -> None:
        super().__init__(f"cannot write to {what}: {error.strerror or error}")


class OutputLost(BoxliteError):
    """The process's output could not be written where it was to go (a full disk, an
    I/O error); the exit code is the process's, or 125 when that was 0."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(f"the output could not be written: {reason}")
        self.exit_code = exit_code or 125


# The reason a box records when boxlite itself ended its VM at once (rm -f, a stop
# whose grace ran out): asked for, so no failure to report.
SHIM_SIGNALLED = "stopped by a signal to the shim"
# The shim's words for a VMM that a signal ended (a kill from outside: never its
# template's fault, so a warm start that failed so keeps the template)
VM_SIGNALLED = "the VM was killed by signal"


class BoxStopped(VmError):
    """The box stopped before its command ended (its VM or guest agent went away): a
    failure of boxlite's, not the command's; exit 125, or 128 + N when a signal ended
    the VM (the host's OOM killer: 137)."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(f"the box stopped before its command ended: {reason}")
        self.exit_code = exit_code or 125


class AgentError(BoxliteError):
    """The guest agent returned an error or went away."""


class AgentTimeout(AgentError):
    """The guest agent did not answer in time (a guest starved by its own box)."""


class SignalHeld(AgentError):
    """A signal to a process of a paused box: its shim holds it for the unpause."""


class SignalEndedWait(AgentError):
    """A signal ended a CLI's wait for its process without the process having taken it
    (its box paused, or its guest agent starved): exit 128 + N, with why."""

    def __init__(self, reason: str, signum: int) -> None:
        super().__init__(reason)
        self.exit_code = 128 + signum


class BoxRestarted(AgentError):
    """A call pinned to one run of a box reached another (it was restarted meanwhile)."""


class DiskError(BoxliteError):
    """Creating or changing a disk image failed."""


class RegistryError(ImageError):
    """A registry refused, failed or could not be reached while pulling."""


class AuthError(RegistryError):
    """A registry rejected the credentials, or needs some and has none."""
