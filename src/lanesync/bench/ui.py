"""Live progress on stderr (rich progress bars), or nothing at all."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Ui:
    """Two bars: sales acknowledged and deliveries (sale x receiving member) of the current
    step, plus one log line per finished step."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.console = Console(stderr=True)
        self._progress: Progress | None = None
        self._acked: TaskID | None = None
        self._delivered: TaskID | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )

    def __enter__(self) -> Ui:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def step(self, title: str, sales: int, deliveries: int) -> None:
        progress = self._progress
        if progress is None:
            return
        for task in (self._acked, self._delivered):
            if task is not None:
                progress.remove_task(task)
        self._acked = progress.add_task(f"{title}: sales acknowledged", total=sales)
        self._delivered = progress.add_task(f"{title}: deliveries", total=deliveries)

    def acked(self, count: int = 1) -> None:
        if self._progress is not None and self._acked is not None:
            self._progress.advance(self._acked, count)

    def delivered(self, done: int, total: int | None = None) -> None:
        if self._progress is not None and self._delivered is not None:
            fields: dict[str, Any] = {"completed": done}
            if total is not None:
                fields["total"] = total
            self._progress.update(self._delivered, **fields)

    def log(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            self.console.print(text, markup=False, highlight=False)
