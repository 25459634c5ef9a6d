"""Run folders: ``runs/eval/exp``, ``exp2``, ... never overwriting an earlier run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import guard_output

RUN_RECORDS = ("results.csv",)  # what a training run leaves beside its weights/*.pt


def check_run_name(name: str) -> str:
    """``--name`` is one folder inside ``--project``: not empty, not ``.`` or ``..``, no separator.
    Anything else would write beside or above the project (``../../x``) or into the project itself."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name or Path(name).name != name:
        raise YolorError(
            f"--name {name!r} is not a folder name",
            hint="pass one folder name without / or \\ (not empty, . or ..); choose its parent with --project",
        )
    return name


def holds_training_run(folder: Path) -> str | None:
    """Why ``folder`` belongs to another training run (its weights or results), or None."""
    weights = sorted((folder / "weights").glob("*.pt")) if (folder / "weights").is_dir() else []
    records = [folder / record for record in RUN_RECORDS if (folder / record).exists()]
    found = weights[:1] or records[:1]
    if not found:
        return None
    return f"holds another run's {'weights' if weights else 'results'} ({found[0].relative_to(folder)})"


def new_run_dir(
    project: str | Path,
    name: str,
    exist_ok: bool = False,
    *,
    inputs: Sequence[Path] = (),
    training: bool = False,
) -> Path:
    """``project/name``; if it exists and ``exist_ok`` is false, the first free ``nameN`` (N >= 2).

    With ``exist_ok`` an existing folder is reused only when that loses nothing: it may hold none of
    the command's ``inputs`` (detect's source images), and for a ``training`` run none of another
    run's weights or results (continue that one with --resume)."""
    base = Path(project) / check_run_name(name)
    path = base
    number = 2
    while path.exists() and not exist_ok:
        path = base.with_name(f"{name}{number}")
        number += 1
    guard_output(
        path,
        inputs=list(inputs),
        overwrite=exist_ok,
        folder=True,
        foreign=holds_training_run if training else None,
        option="the run folder",
        hint="continue that run with --resume, or choose another --name"
        if training
        else "choose another --name or --project",
    )
    path.mkdir(parents=True, exist_ok=True)
    return path
