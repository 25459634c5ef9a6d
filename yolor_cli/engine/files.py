"""Reading the files users name safely, and writing files without losing anything: atomic
replacement and backups of user edits."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from yolor_cli.engine.errors import YolorError

BACKUP_SUFFIX = ".bak"
# What a path that is not a regular file is, in words (os.stat's mode tests, in order).
_NOT_REGULAR = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(path: Path, what: str) -> None:
    """Refuse a user-named file that is not a regular file, before anything opens it.

    Opening a FIFO for reading waits for a writer forever, and a device can stream without end:
    both would hang a command with no word of why. ``what`` names the file in the message ("data
    file"). A missing path passes: the read that follows says "not found" in its caller's words.
    Symlinks are followed, so a link to a regular file is fine.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise YolorError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return
    kind = next((words for test, words in _NOT_REGULAR if test(mode)), "not a file")
    raise YolorError(
        f"{what} {path} is {kind}, not a regular file",
        hint="pass the path of a regular file (save what a pipe or device gives to a file first)",
    )


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, then raise it.

    ``torch.save`` writes through C++; a KeyboardInterrupt raised inside its callbacks comes out as a
    RuntimeError ("unexpected pos ..."), so a Ctrl-C during a checkpoint save must wait for the save.
    Only the main thread can own signal handlers, and only Python's own Ctrl-C handler is replaced
    (an ignored SIGINT, as under nohup, stays ignored); otherwise the block runs as is.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def check_output(path: Path, source: Path, overwrite: bool) -> None:
    """An output may replace an existing file only when asked to, and never the file it is made from."""
    if path.resolve() == source.resolve():
        raise YolorError(f"--output {path} is the input weights file", hint="choose another --output")
    if path.exists() and not overwrite:
        raise YolorError(
            f"--output {path} already exists", hint="choose another --output, or pass --overwrite to replace it"
        )


def check_output_folder(path: Path, source: Path, overwrite: bool, suffixes: tuple[str, ...]) -> None:
    """:func:`check_output` for an output that is a folder replaced whole (an OpenVINO IR): with
    ``overwrite`` it may replace only a folder of the same kind, holding nothing but files with
    ``suffixes``, so a mistyped ``--output`` can never wipe a folder of the user's."""
    check_output(path, source, overwrite)
    if not path.exists():
        return
    if not path.is_dir():
        raise YolorError(
            f"--output {path} is a file; this format is written as a folder", hint="choose another --output"
        )
    if source.resolve().is_relative_to(path.resolve()):
        raise YolorError(f"--output {path} holds the input weights", hint="choose another --output")
    others = [item.name for item in path.iterdir() if not (item.is_file() and item.suffix.lower() in suffixes)]
    if others:
        raise YolorError(
            f"--output {path} is a folder with other things in it ({', '.join(sorted(others)[:3])}); "
            "it would be replaced whole",
            hint="choose a new or an earlier export's folder for --output",
        )


def atomic_write(path: Path, write: Callable[[BinaryIO], None], check: Callable[[Path], None] | None = None) -> Path:
    """Write through a temporary file in the same folder, then rename over ``path``.

    A crash or kill mid-write leaves the previous file intact; Ctrl-C waits for the write and the
    rename to end. ``check`` reads the finished temporary file back (an export verifying itself on a
    runtime) and raises to stop the rename: a file that fails its check never replaces anything. A
    check may take a while, so Ctrl-C is not held during it (nor during the write before it: the
    file would not be kept anyway).
    """
    if check is None:
        with interrupts_deferred():
            return _atomic_write(path, write, None)
    return _atomic_write(path, write, check)


def _atomic_write(path: Path, write: Callable[[BinaryIO], None], check: Callable[[Path], None] | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temp_name, mode)
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        if check is not None:
            check(Path(temp_name))
            with interrupts_deferred():
                os.replace(temp_name, path)
        else:
            os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return path


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder (an OpenVINO IR is a folder)."""
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size


def atomic_folder(path: Path, write: Callable[[Path], None], check: Callable[[Path], None] | None = None) -> Path:
    """:func:`atomic_write` for a file set that lives in one folder (an OpenVINO IR: .xml + .bin).

    ``write`` fills a temporary folder beside ``path``; ``check`` reads it back; only then does it
    take ``path``'s place. An existing folder is moved aside first and removed once the new one is
    in place, so a crash leaves either the old or the new folder, never a mix of both.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old: Path | None = None
    try:
        os.chmod(temp, 0o777 & ~_UMASK)
        write(temp)
        if check is not None:
            check(temp)
        with interrupts_deferred():
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                os.replace(path, old / path.name)
            os.replace(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if old is not None and not path.exists():  # put the previous folder back
            os.replace(old / path.name, path)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path


def _process_umask() -> int:
    umask = os.umask(0)  # the only way to read it; done once, at import, before any thread starts
    os.umask(umask)
    return umask


_UMASK = _process_umask()


def _mode_for(path: Path) -> int:
    """A replaced file keeps its mode; a new one gets what ``open(path, "w")`` gives (mkstemp's 0600
    would hide checkpoints and exports from the rest of a team)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_UMASK


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
