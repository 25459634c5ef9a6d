"""Writing files without losing anything: atomic replacement and backups of user edits."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

BACKUP_SUFFIX = ".bak"


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write through a temporary file in the same folder, then rename over ``path``.

    A crash or Ctrl-C mid-write leaves the previous file intact and no partial file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return path


def _free_backup_path(path: Path) -> Path:
    candidate = path.with_name(path.name + BACKUP_SUFFIX)
    number = 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}{BACKUP_SUFFIX}{number}")
    return candidate


def write_text_keeping_backup(path: Path, text: str) -> Path | None:
    """Write ``text``; if a different file was there, keep it as ``name.bak`` (never overwrite a backup).

    Returns the backup's path when one was made. Identical content is left untouched.
    """
    data = text.encode("utf-8")
    backup = None
    if path.exists():
        if path.read_bytes() == data:
            return None
        backup = _free_backup_path(path)
        os.replace(path, backup)
    atomic_write(path, lambda stream: stream.write(data))
    return backup
