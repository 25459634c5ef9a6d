"""The one place that writes to the terminal: Rich consoles, errors, notes and ``--json`` output.

Consoles are made per call so that ``NO_COLOR``, ``COLUMNS`` and redirected streams are read at
the moment of printing (and test runners that swap ``sys.stdout`` see the output).

A terminal gets Rich's usual layout, as wide as the window (or ``COLUMNS``). Anything else (a log
file, CI, ``| tee``) gets lines as long as their content: Rich would otherwise fold a long path
across two lines at 80 columns, and a log could no longer be searched for a file name.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from yolor_cli.engine.reporting import total_of

T = TypeVar("T")

# The width Rich lays out to when the stream is not a terminal: wider than any line we print (paths
# are at most 4096 bytes on Linux), so nothing folds; tables are not expanded, so they are only as
# wide as their content, and plain text is not padded.
UNBOUNDED_WIDTH = 1 << 16


def _is_terminal(stream: IO[str]) -> bool:
    """The stream itself, not Rich's guess: FORCE_COLOR (common in CI) makes Rich call a pipe a
    terminal for colour's sake, but a pipe still must not fold lines."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or minimal stream
        return False


def _console(stderr: bool) -> Console:
    if _is_terminal(sys.stderr if stderr else sys.stdout):
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, width=UNBOUNDED_WIDTH, soft_wrap=True)


def stdout_console() -> Console:
    return _console(stderr=False)


def stderr_console() -> Console:
    return _console(stderr=True)


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


class RateColumn(ProgressColumn):
    """Items per second (Rich's own speed column is for bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} it/s" if speed else "-- it/s", style="progress.data.speed")


class RichReporter:
    """The engine's Reporter for the terminal: progress bars, tables and warnings on stderr, so
    stdout stays clean for tables and ``--json``."""

    def __init__(self) -> None:
        self.console = stderr_console()
        self._current: tuple[Progress, Any] | None = None
        self._values: dict[str, str] = {}
        self._keys: dict[str, str] = {}  # field name -> Rich task field ("total" would clash with add_task)

    def track(
        self, items: Iterable[T], description: str, total: int | None = None, fields: Sequence[str] = ()
    ) -> Iterator[T]:
        if fields:  # a training epoch: the seed's columns, then a line that stays
            columns: tuple[ProgressColumn, ...] = (
                TextColumn("{task.description}"),
                *(TextColumn(f"{{task.fields[f{i}]}}", justify="right") for i in range(len(fields))),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                RateColumn(),
                TimeRemainingColumn(),
            )
            self._values = dict.fromkeys(fields, "")
            self._keys = {name: f"f{i}" for i, name in enumerate(fields)}
        else:
            columns = (
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
        live = _is_terminal(sys.stderr)  # not Rich's guess: FORCE_COLOR would redraw bars into a log
        with Progress(*columns, console=self.console, transient=not fields, disable=not live) as progress:
            task = progress.add_task(
                escape(description),
                total=total_of(items, total),
                **{self._keys[name]: value for name, value in self._values.items()},
            )
            self._current = (progress, task)
            try:
                for item in items:
                    yield item
                    progress.advance(task)
            finally:
                self._current = None
        if fields and not live:  # logs get one line per epoch instead of a live bar
            self.console.print(escape(description), *(escape(self._values[name]) for name in fields))

    def update(self, values: dict[str, str]) -> None:
        self._values.update(values)
        if self._current is not None:
            progress, task = self._current
            progress.update(task, **{self._keys[name]: value for name, value in values.items() if name in self._keys})

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.console.print(f"[bold]{escape(title)}[/]")  # not the table's title: that wraps to its width
        table = Table(header_style="bold")
        for index, header in enumerate(headers):
            table.add_column(escape(header), justify="left" if index == 0 else "right")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        self.console.print(table)

    def info(self, message: str) -> None:
        self.console.print(escape(message))

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]Warning:[/] {escape(message)}")
