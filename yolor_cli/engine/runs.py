"""Run folders: ``runs/eval/exp``, ``exp2``, ... never overwriting an earlier run."""

from __future__ import annotations

from pathlib import Path


def new_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """``project/name``; if it exists and ``exist_ok`` is false, the first free ``nameN`` (N >= 2)."""
    base = Path(project) / name
    path = base
    number = 2
    while path.exists() and not exist_ok:
        path = base.with_name(f"{name}{number}")
        number += 1
    path.mkdir(parents=True, exist_ok=True)
    return path
