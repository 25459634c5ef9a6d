"""The one place that writes to the terminal: Rich consoles, errors, notes and ``--json`` output.

Consoles are made per call so that ``NO_COLOR``, ``COLUMNS`` and redirected streams are read at
the moment of printing (and test runners that swap ``sys.stdout`` see the output).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from yolor_cli.engine.reporting import total_of

T = TypeVar("T")


def stdout_console() -> Console:
    return Console(highlight=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_error(message: str, hint: str | None = None) -> None:
    console = stderr_console()
    console.print(f"[bold red]Error:[/] {escape(message)}")
    if hint:
        console.print(f"[yellow]Hint:[/] {escape(hint)}")


def print_notes(notes: Iterable[str]) -> None:
    console = stderr_console()
    for note in notes:
        console.print(f"[cyan]Note:[/] {escape(note)}")


def print_json(payload: dict[str, Any]) -> None:
    """One JSON object on one line of stdout, uncoloured, for scripts."""
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


class RichReporter:
    """The engine's Reporter for the terminal: progress bars and warnings on stderr, so stdout
    stays clean for tables and ``--json``."""

    def __init__(self) -> None:
        self.console = stderr_console()
        self._current: tuple[Progress, Any] | None = None

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=True,
                      disable=not self.console.is_terminal) as progress:
            task = progress.add_task(description, total=total_of(items, total))
            self._current = (progress, task)
            try:
                for item in items:
                    yield item
                    progress.advance(task)
            finally:
                self._current = None

    def describe(self, text: str) -> None:
        if self._current is not None:
            progress, task = self._current
            progress.update(task, description=escape(text))

    def info(self, message: str) -> None:
        self.console.print(escape(message))

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]Warning:[/] {escape(message)}")
