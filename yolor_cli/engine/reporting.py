"""How the engine tells the outside world about progress and warnings.

The engine never prints: it calls a :class:`Reporter`. The CLI passes one that draws Rich
progress bars; library users get the silent one by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Protocol, TypeVar

T = TypeVar("T")


class Reporter(Protocol):
    def track(
        self, items: Iterable[T], description: str, total: int | None = None, fields: Sequence[str] = ()
    ) -> Iterator[T]:
        """Yield ``items`` while showing progress; ``fields`` name extra columns set by :meth:`update`
        (the per-step figures of a training epoch), and such a line stays when it is done."""
        ...

    def update(self, values: dict[str, str]) -> None:
        """New values for the ``fields`` of the progress being shown."""
        ...

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A small results table (the validation after an epoch)."""
        ...

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...


class SilentReporter:
    """For library use and tests: progress is not shown, warnings are kept for inspection."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def track(
        self, items: Iterable[T], description: str, total: int | None = None, fields: Sequence[str] = ()
    ) -> Iterator[T]:
        yield from items

    def update(self, values: dict[str, str]) -> None:
        pass

    def table(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def total_of(items: Iterable[object], total: int | None) -> int | None:
    return total if total is not None else (len(items) if isinstance(items, Sized) else None)
