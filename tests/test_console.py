"""stderr in a log file or pipe: plain full lines, progress as a line per tenth of a task."""

from __future__ import annotations

import io

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from hopecli.console import LineProgress, StderrConsole, progress_bars

MESSAGE = ("after 1. low: teacher-forcing/jump error low 0.0629/0.0652, mid 0.0644/0.0679, "
           "high 0.0622/0.0633, new_friction 0.0700/0.0712, and a few more words to pass 120 columns")


def _console(terminal: bool) -> tuple[StderrConsole, io.StringIO]:
    buffer = io.StringIO()
    return StderrConsole(file=buffer, force_terminal=terminal, color_system=None,
                         _environ={} if not terminal else {"COLUMNS": "80"}), buffer


def test_a_long_message_stays_one_line_when_not_a_terminal():
    console, buffer = _console(terminal=False)
    console.print(MESSAGE)
    assert buffer.getvalue() == MESSAGE + "\n"


def test_a_terminal_still_wraps_at_its_width():
    console, buffer = _console(terminal=True)
    console.print(MESSAGE)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3 and max(len(line) for line in lines) <= 80


def test_progress_in_a_log_is_a_line_per_tenth_of_the_task():
    console, buffer = _console(terminal=False)
    progress = progress_bars(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("loss {task.fields[loss]}"), console=console)
    assert isinstance(progress, LineProgress)
    with progress:
        task = progress.add_task("1. low", total=20, loss="-")
        for step in range(20):
            progress.update(task, advance=1, loss=f"{step / 10:.4f}")
    assert buffer.getvalue().splitlines() == [
        f"1. low {n:>2}/20 loss {(n - 1) / 10:.4f}" for n in range(2, 21, 2)]


def test_progress_in_a_terminal_is_a_live_bar():
    console, _ = _console(terminal=True)
    progress = progress_bars(TextColumn("x"), console=console)
    assert type(progress) is Progress
