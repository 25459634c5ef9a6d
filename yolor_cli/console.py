"""The one place that writes to the terminal: Rich consoles, errors, notes and ``--json`` output.

Consoles are made per call so that ``NO_COLOR``, ``COLUMNS`` and redirected streams are read at
the moment of printing (and test runners that swap ``sys.stdout`` see the output).

A terminal gets Rich's usual layout, as wide as the window (or ``COLUMNS``). Anything else (a log
file, CI, ``| tee``) gets lines as long as their content: Rich would otherwise fold a long path
across two lines at 80 columns, and a log could no longer be searched for a file name.

Nothing is read as markup or emoji unless a caller asks for it by name: the consoles print strings
verbatim (a class called ``[/b]`` or a file called ``:smile:.jpg`` is data, not a style or an
emoji), and styled text is built with :func:`markup`, whose template is ours and whose values are
shown as they are. Table cells and progress descriptions are plain text for the same reason.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, TypeVar

from rich.console import Console
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
    # markup, emoji and highlighting off: every string printed is shown as it is; styles come only
    # from Text objects (see markup()).
    plain: dict[str, Any] = {"markup": False, "emoji": False, "highlight": False}
    if _is_terminal(sys.stderr if stderr else sys.stdout):
        return Console(stderr=stderr, **plain)
    return Console(stderr=stderr, width=UNBOUNDED_WIDTH, soft_wrap=True, **plain)


# Stand-ins for markup()'s values while the template is parsed: private-use characters, which no
# template of ours holds, one per value so that "{0}" may repeat.
_FIELD_BASE = 0xE000


def markup(template: str, *values: object) -> Text:
    """Styled text on purpose: ``template`` is our own Rich markup with ``{}`` fields, and each value
    is data (a path, a class name, a message) that is shown verbatim, never read as markup or emoji.

    The one way this package prints styles: ``markup("Wrote [b]{}[/]", path)``. Values are put in
    after the template is parsed (taking the styles around their field), not escaped into it: Rich's
    escaping depends on what follows a value (a trailing backslash), so it cannot be exact.
    """
    parsed = Text.from_markup(template.format(*(chr(_FIELD_BASE + i) for i in range(len(values)))), emoji=False)
    result = Text(justify=parsed.justify, overflow=parsed.overflow, no_wrap=parsed.no_wrap, end=parsed.end)
    last = 0
    for offset, char in enumerate(parsed.plain):
        index = ord(char) - _FIELD_BASE
        if not 0 <= index < len(values):
            continue
        result.append_text(parsed[last:offset])
        value = Text(str(values[index]))
        for span in parsed.spans:
            if span.start <= offset < span.end:
                value.stylize(span.style)
        result.append_text(value)
        last = offset + 1
    result.append_text(parsed[last:])
    return result


def stdout_console() -> Console:
    return _console(stderr=False)


def stderr_console() -> Console:
    return _console(stderr=True)


def print_error(message: str, hint: str | None = None) -> None:
    console = stderr_console()
    console.print(markup("[bold red]Error:[/] {}", message))
    if hint:
        console.print(markup("[yellow]Hint:[/] {}", hint))


def print_notes(notes: Iterable[str]) -> None:
    console = stderr_console()
    for note in notes:
        console.print(markup("[cyan]Note:[/] {}", note))


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
                TextColumn("{task.description}", markup=False),
                *(TextColumn(f"{{task.fields[f{i}]}}", justify="right", markup=False) for i in range(len(fields))),
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
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
        live = _is_terminal(sys.stderr)  # not Rich's guess: FORCE_COLOR would redraw bars into a log
        with Progress(*columns, console=self.console, transient=not fields, disable=not live) as progress:
            task = progress.add_task(
                description,
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
            self.console.print(description, *(self._values[name] for name in fields))

    def update(self, values: dict[str, str]) -> None:
        self._values.update(values)
        if self._current is not None:
            progress, task = self._current
            progress.update(task, **{self._keys[name]: value for name, value in values.items() if name in self._keys})

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.console.print(Text(title, style="bold"))  # not the table's title: that wraps to its width
        table = Table(header_style="bold")
        for index, header in enumerate(headers):
            table.add_column(Text(header), justify="left" if index == 0 else "right")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        self.console.print(table)

    def info(self, message: str) -> None:
        self.console.print(message)

    def warning(self, message: str) -> None:
        self.console.print(markup("[yellow]Warning:[/] {}", message))
