"""The pull progress display: one rich bar per layer on a terminal, silence elsewhere."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from boxlite_cli.oci.pull import PullProgress
    from boxlite_cli.oci.reference import Reference


class RichPullProgress:
    """Draws a pull on stderr with rich (thread-safe: layers download in parallel)."""

    def __init__(self, progress: Progress, title: str) -> None:
        self.progress = progress
        self.title = title
        self.tasks: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def resolved(self, reference: Reference, digest: str, layers: list[tuple[str, int]]) -> None:
        with self.lock:
            if self.title:  # (once, when its manifest is known, as docker's "Pulling from")
                self.progress.console.print(f"Pulling {self.title}", highlight=False)
                self.title = ""
            for layer, size in layers:
                if layer not in self.tasks:
                    self.tasks[layer] = self.progress.add_task(layer[7:19], total=size or None)

    def advance(self, digest: str, completed: int) -> None:
        task = self.tasks.get(digest)
        if task is not None:
            self.progress.update(task, completed=completed)

    def finished(self, digest: str, status: str) -> None:
        task = self.tasks.get(digest)
        if task is not None:
            total = self.progress.tasks[task].total
            self.progress.update(task, completed=total, description=f"{digest[7:19]} {status}")

    def unpacking(self) -> None:
        self.progress.console.print("Unpacking its file system", highlight=False)


@contextlib.contextmanager
def pull_display(title: str) -> Iterator[PullProgress]:
    """Progress bars on stderr when it is a terminal; nothing otherwise (CI, pipes)."""
    from boxlite_cli.oci.pull import NoProgress

    if not sys.stderr.isatty():
        yield NoProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console, transient=False) as progress:
        yield RichPullProgress(progress, title)
