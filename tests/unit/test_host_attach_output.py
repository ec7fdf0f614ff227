"""attach's output to a standard output or error that refuses it (a full disk under
the file it goes to): said as that stream's, not with the data directory's hint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, cast

import pytest

from boxlite_cli.errors import OutputUnwritable
from boxlite_cli.runtime.attach import Attachment
from boxlite_cli.shim.logframes import LogRecord


class _Logs:
    def __init__(self, *records: LogRecord) -> None:
        self.records = records

    def logs(self, box_id: str, follow: bool, tail: int) -> Iterator[LogRecord]:
        yield from self.records


@pytest.mark.parametrize(("stream", "what"), [(0, "standard output"), (1, "standard error")])
def test_a_full_disk_under_the_output_is_said_as_the_streams(stream: int, what: str) -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        attachment = Attachment(cast(Any, _Logs(LogRecord(stream, b"x" * 100))), "b" * 64,
                                cast(Any, None), stdin=False, tty=False,
                                stdout_fd=full, stderr_fd=full)
        attachment._output()
    finally:
        os.close(full)
    assert isinstance(attachment.error, OutputUnwritable)
    assert attachment.error.message == f"cannot write to {what}: No space left on device"
    assert attachment.error.hint is None
