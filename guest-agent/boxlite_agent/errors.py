"""Errors that map onto gRPC status codes, without importing grpc."""

from __future__ import annotations


class AgentError(Exception):
    """An error reported to the client as a gRPC status (``code`` names a StatusCode)."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(AgentError):
    code = "INVALID_ARGUMENT"


class UnknownUser(InvalidArgument):
    """A --user (or its group) that the box's passwd (group) file does not have: the
    box's main process cannot start (INVALID_ARGUMENT); an exec fails with 126, as
    docker's does."""


class NotFound(AgentError):
    code = "NOT_FOUND"


class AlreadyExists(AgentError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(AgentError):
    code = "FAILED_PRECONDITION"


class Internal(AgentError):
    code = "INTERNAL"


class ExecFailure(Exception):
    """A process could not be started; reported in ExecResponse (126 or 127), not as a status."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
