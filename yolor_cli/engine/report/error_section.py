"""The error breakdown section of a report: TIDE's six error types as eval's ``errors`` object holds them
(errors.json, or a breakdown the report computes for the model it scores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolor_cli.engine.evaluate.errors import ERROR_LABELS, ERROR_TYPES
from yolor_cli.engine.report.page import Figure, Page, Section, Table, file_uri, number


def _dap(value: object, key: str) -> object:
    """One figure of an error type in errors.json (``{map50, map, count}``)."""
    return value.get(key) if isinstance(value, dict) else None


def errors_section(page: Page, errors: dict[str, Any], figure: Path | None, source: str) -> Section:
    """The error breakdown section from eval's ``errors`` object (errors.json: see engine/evaluate/errors.py)."""
    section = page.add(Section("errors", "Error breakdown", notes=[source]))
    overall = [
        [
            ERROR_LABELS[key],
            number(_dap(errors[key], "map")),
            number(_dap(errors[key], "map50")),
            number(_dap(errors[key], "count")),
        ]
        for key in ERROR_TYPES
        if key in errors
    ]
    if overall:
        caption = "dAP: the mAP gained if this kind of error were fixed (TIDE's split); count at IoU 0.5"
        section.tables.append(Table(["error type", "dAP50-95", "dAP50", "count"], overall, caption))
    per_class = errors.get("per_class")
    if isinstance(per_class, list) and per_class:
        rows = [
            [str(item.get("class", "?")), *(number(_dap(item.get(key), "map")) for key in ERROR_TYPES)]
            for item in per_class
            if isinstance(item, dict)
        ]
        labels = [ERROR_LABELS[key] for key in ERROR_TYPES]
        section.tables.append(Table(["class", *labels], rows, "dAP50-95 per class"))
    if figure is not None and figure.is_file():
        section.figures.append(Figure("error breakdown", file_uri(figure)))
    return section
