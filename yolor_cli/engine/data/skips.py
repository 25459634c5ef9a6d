"""Why a file, or some objects in it, were left out of a dataset: typed reasons, and their groups.

A reason is a kind plus the words that vary (the unknown class, the parser's message), so a report
can group files by kind and count them without taking sentences apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from yolor_cli.engine.errors import DataError


class SkipReason(Enum):
    """The value is the reason as a report groups it; ``{subject}`` is filled in per group."""

    SAME_NAME = "another {subject} has the same name"
    NO_ANNOTATION = "no annotation XML with the same name"
    MISSING_IMAGE = "missing image"
    MALFORMED_XML = "malformed XML"
    BAD_CLASS_NAME = "unusable class name"
    CORRUPT_IMAGE = "corrupt image"
    IMAGE_TOO_SMALL = "image too small"
    IMAGE_TOO_LARGE = "image too large to decode safely"
    NOT_A_FILE = "not a regular file"
    UNKNOWN_CLASS = "unknown class {subject!r}"
    DEGENERATE_BOX = "degenerate box (empty after clipping or unreadable)"
    NOT_USABLE = "listed in ImageSets {subject}.txt but not usable"


class UnusableFile(DataError):
    """A file that cannot be used. The message is the reason alone (callers name the file)."""

    def __init__(self, reason: SkipReason, detail: str = "") -> None:
        super().__init__(f"{reason.value} ({detail})" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Skipped:
    """A file left out (``objects`` is 0), or ``objects`` of the objects in it, for one reason."""

    file: str
    kind: SkipReason
    subject: str = ""  # fills the reason's {subject}: "image", the unknown class, the ImageSets list
    detail: str = ""  # this file's own specifics: the parser's message, the other file's name
    objects: int = 0

    @property
    def group(self) -> str:
        """The reason shared by every file of its group (``unknown class 'hexagon'``)."""
        return self.kind.value.format(subject=self.subject)

    @property
    def reason(self) -> str:
        """The whole reason for this file in one phrase, as ``--json`` gives it."""
        if self.kind is SkipReason.UNKNOWN_CLASS:
            return f"unknown class ({self.objects} x {self.subject!r})"
        if self.kind is SkipReason.DEGENERATE_BOX:
            return f"degenerate box ({self.objects} dropped: empty after clipping or unreadable)"
        return f"{self.group} ({self.detail})" if self.detail else self.group


@dataclass(frozen=True)
class SkipGroup:
    reason: str
    items: tuple[Skipped, ...]

    @property
    def files(self) -> int:
        return len({item.file for item in self.items})

    @property
    def objects(self) -> int:
        """Objects left out of files that were kept; 0 when the group's files were left out whole."""
        return sum(item.objects for item in self.items)


def group_skipped(skipped: list[Skipped]) -> list[SkipGroup]:
    """One group per reason, the most files first (ties in the order they were found)."""
    groups: dict[str, list[Skipped]] = {}
    for item in skipped:
        groups.setdefault(item.group, []).append(item)
    return sorted((SkipGroup(reason, tuple(items)) for reason, items in groups.items()), key=lambda g: -g.files)
