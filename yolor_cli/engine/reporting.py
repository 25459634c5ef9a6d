"""How the engine tells the outside world about progress and warnings.

The engine never prints: it calls a :class:`Reporter`. The CLI passes one that draws Rich
progress bars; library users get the silent one by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Protocol, TypeVar

T = TypeVar("T")


class Reporter(Protocol):
    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Yield ``items`` while showing progress."""
        ...

    def describe(self, text: str) -> None:
        """Replace the description of the progress being shown (per-step figures while training)."""
        ...

    def info(self, message: str) -> None:
        ...

    def warning(self, message: str) -> None:
        ...


class SilentReporter:
    """For library use and tests: progress is not shown, warnings are kept for inspection."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        yield from items

    def describe(self, text: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def total_of(items: Iterable[object], total: int | None) -> int | None:
    return total if total is not None else (len(items) if isinstance(items, Sized) else None)
