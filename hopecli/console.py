"""Shared Rich consoles: progress and tables on stderr, data on stdout.

In a terminal, stderr gets Rich's wrapping and live progress bars. Anywhere else (a log
file, a pipe, a test) it gets plain full lines: messages are not wrapped at 80 columns,
tables get room up to PLAIN_WIDTH, and progress bars become one line per tenth of a task
(`progress_bars`), so a log reads in order.
"""

from __future__ import annotations

import math

from rich.console import Console, ConsoleDimensions
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, TaskID, TimeRemainingColumn
from rich.text import Text

PLAIN_WIDTH = 200  # tables written to a file or pipe; text lines are never wrapped there
PROGRESS_LINES = 10  # lines per progress task when stderr is not a terminal


class StderrConsole(Console):
    """A Console that writes plain full lines when its file is not a terminal."""

    def _plain(self) -> bool:
        return not self.is_terminal and self._width is None and "COLUMNS" not in self._environ

    def _get_size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return ConsoleDimensions(PLAIN_WIDTH, size.height) if self._plain() else size

    size = property(_get_size, Console.size.fset)

    def print(self, *objects, soft_wrap: bool | None = None, **kwargs) -> None:
        if soft_wrap is None and not self.is_terminal and all(isinstance(o, (str, Text)) for o in objects):
            soft_wrap = True  # a message stays one line, however long
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


class LineProgress(Progress):
    """Progress for a log: no live display, a plain line at every tenth of a task and at its end.

    The line is the text of the bar's columns (description, counts, fields), bar and
    spinner left out.
    """

    def __init__(self, *columns, **kwargs) -> None:
        kwargs["disable"] = True  # no live display; lines are printed instead
        super().__init__(*columns, **kwargs)
        self._printed: dict[TaskID, int] = {}

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._line(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._line(task_id)

    def _line(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        if not task.total:
            return
        every = max(1, math.ceil(task.total / PROGRESS_LINES))
        done = int(task.completed)
        if done == self._printed.get(task_id) or not (done % every == 0 or done >= task.total) or done == 0:
            return
        self._printed[task_id] = done
        parts = [column.render(task).plain if isinstance(column, ProgressColumn) else column.format(task=task)
                 for column in self.columns
                 if not isinstance(column, (BarColumn, SpinnerColumn, TimeRemainingColumn))]
        self.console.print(" ".join(p for p in parts if p.strip()))


def progress_bars(*columns, console: Console | None = None, disable: bool = False, **kwargs) -> Progress:
    """Rich progress bars in a terminal, LineProgress elsewhere, nothing when disabled."""
    console = console or err
    if disable or console.is_terminal:
        return Progress(*columns, console=console, disable=disable, **kwargs)
    return LineProgress(*columns, console=console, **kwargs)


err = StderrConsole(stderr=True)
out = Console()
