"""The one place that writes to the terminal: Rich consoles, errors, notes and ``--json`` output.

Consoles are made per call so that ``NO_COLOR``, ``COLUMNS`` and redirected streams are read at
the moment of printing (and test runners that swap ``sys.stdout`` see the output).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape


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
