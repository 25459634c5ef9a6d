"""Class names for a model: from the checkpoint, a names file or a data.yaml, else indices."""

from __future__ import annotations

from pathlib import Path

from yolor_cli.engine.config import load_data_names, parse_class_list
from yolor_cli.engine.errors import YolorError


def resolve_names(
    checkpoint_names: list[str] | None, nc: int, *, names_file: Path | None = None, data: Path | None = None
) -> list[str] | None:
    """The first source that names the classes; it must name exactly ``nc`` of them."""
    for names, origin in (
        (checkpoint_names, "the checkpoint"),
        (parse_class_list(None, names_file) if names_file else None, str(names_file)),
        (list(load_data_names(data)) if data else None, str(data)),
    ):
        if names is None:
            continue
        if len(names) != nc:
            raise YolorError(f"{origin} names {len(names)} classes but the model has {nc}")
        return list(names)
    return None


def resolve_class_filter(values: list[str] | None, names: list[str] | None, nc: int) -> list[int] | None:
    """``--classes 0,2`` or ``--classes cat --classes dog`` to class indices."""
    if not values:
        return None
    indices = []
    for part in (p.strip() for value in values for p in value.split(",")):
        if not part:
            continue
        if part.isdigit() and int(part) < nc:
            indices.append(int(part))
        elif names and part in names:
            indices.append(names.index(part))
        else:
            raise YolorError(f"--classes {part!r} is neither a class index below {nc} nor a class name")
    return sorted(set(indices))
