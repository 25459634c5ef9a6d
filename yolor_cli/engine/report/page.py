"""What a report page holds, independent of how it is drawn: sections of figures (inline images),
tables, notes and the gallery. Every image is a ``data:`` URI, so the page needs no other file."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

MIME_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def data_uri(content: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def file_uri(path: Path) -> str:
    """A PNG or JPEG file the tool drew, inline."""
    return data_uri(path.read_bytes(), MIME_TYPES[path.suffix.lower()])


@dataclass(frozen=True)
class Figure:
    title: str
    uri: str  # a data: URI
    caption: str = ""
    wide: bool = False  # drawn across the page (results.png's many panels), else two to a row


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    options: bool = False  # a long list of option = value: folded away, values left-aligned and wrapped


@dataclass(frozen=True)
class GalleryItem:
    title: str  # the image's file name
    uri: str
    caption: str  # its errors, in words


@dataclass
class Section:
    key: str  # stable name, for --json and the page's anchors
    title: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gallery: list[GalleryItem] = field(default_factory=list)


@dataclass
class Page:
    kind: str  # train, prune-auto, benchmark, eval
    title: str
    run_dir: Path
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be shown, and why

    def add(self, section: Section) -> Section:
        self.sections.append(section)
        return section


def number(value: object, digits: int = 4) -> str:
    """A table cell: numbers rounded for reading, None as a dash."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        figure = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{figure:.1f}" if abs(figure) >= 1000 else f"{figure:.{digits}f}"
