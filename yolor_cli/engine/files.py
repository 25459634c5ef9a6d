"""Reading the files users name safely, and writing files without losing anything: atomic
replacement and backups of user edits."""

from __future__ import annotations

import contextlib
import errno
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


# A write that failed this close to a full disk failed for want of space, whatever the writer's words
# (torch.save's C++ stream says "inline_container.cc ... unexpected pos", OpenVINO "basic_ios::clear").
DISK_FULL_FREE_BYTES = 1024 * 1024
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_WORDS = ("no space left on device", "disk quota exceeded")


class DiskFullError(YolorError):
    """A write that ran out of space; nothing partial was left behind."""


def disk_full_error(error: BaseException, path: Path) -> DiskFullError | None:
    """``error`` as "no space left on device: PATH" when the write failed for want of space, else None.

    OSError carries ENOSPC; torch and OpenVINO write through C++ streams and raise RuntimeError with
    their own words, so for those the free space of ``path``'s file system decides (asked before the
    temporary file is removed, while the disk is still as full as the write left it)."""
    if isinstance(error, DiskFullError):
        return error
    if not isinstance(error, (OSError, RuntimeError)):
        return None
    text = str(error).lower()
    full = getattr(error, "errno", None) in _DISK_FULL_ERRNOS or any(words in text for words in _DISK_FULL_WORDS)
    if not full:
        folder = next((parent for parent in (path, *path.parents) if parent.is_dir()), None)
        try:
            full = folder is not None and shutil.disk_usage(folder).free < DISK_FULL_FREE_BYTES
        except OSError:
            full = False
    if not full:
        return None
    return DiskFullError(
        f"no space left on device: {path}", hint="free some space (or choose an --output on another disk) and run again"
    )


@contextlib.contextmanager
def reporting_disk_full(path: Path) -> Iterator[None]:
    """Turn a write's out-of-space failure, whatever raised it, into one :class:`DiskFullError`."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        translated = disk_full_error(error, path)
        if translated is None:
            raise
        raise translated from None


def guard_output(
    path: Path,
    *,
    inputs: tuple[Path, ...] | list[Path] = (),
    overwrite: bool = False,
    folder: bool = False,
    suffixes: tuple[str, ...] = (),
    foreign: Callable[[Path], str | None] | None = None,
    rewrite_own: bool = False,
    option: str = "--output",
    hint: str = "choose another --output",
) -> Path:
    """The one check every output path passes before any work: ``path`` may be written, or a
    YolorError says why not.

    Refused: a path under an existing file; one of the command's ``inputs`` (or, for a ``folder``, a
    folder holding one); a suffix outside ``suffixes`` (when given), so a checkpoint never takes an
    ONNX name; an existing folder where a file goes and the reverse. An existing path that
    ``foreign`` describes (it returns why the path is not one this tool wrote for this purpose, or
    None) is a folder never replaced and a file replaced only with ``overwrite``; one of ours is
    replaced with ``overwrite``, or always with ``rewrite_own`` (a table each run rewrites).
    """
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise YolorError(f"{option} {path} is under {parent}, which is a file, not a folder", hint=hint)
    _refuse_inputs(path, inputs, folder, option, hint)
    if suffixes and path.suffix.lower() not in suffixes:
        raise YolorError(
            f"{option} {path} must end in {' or '.join(suffixes)}: that is the kind of file written",
            hint=f"name it {path.with_suffix(suffixes[0]).name}",
        )
    if not path.exists():
        return path
    if folder != path.is_dir():
        kind, wanted = ("a file", "a folder") if folder else ("a folder", "a file")
        raise YolorError(f"{option} {path} is {kind}; {wanted} is written there", hint=hint)
    reason = foreign(path) if foreign is not None else None
    if reason is not None and (folder or not overwrite):
        extra = "" if folder else " (pass --overwrite to replace it anyway)"
        raise YolorError(f"{option} {path} {reason}; nothing is written there{extra}", hint=hint)
    if reason is None and not (overwrite or rewrite_own):
        raise YolorError(f"{option} {path} already exists", hint=f"{hint}, or pass --overwrite to replace it")
    return path


def _refuse_inputs(path: Path, inputs: tuple[Path, ...] | list[Path], folder: bool, option: str, hint: str) -> None:
    """No output is ever written over, or as a folder around, one of the command's own inputs."""
    target = path.resolve()
    for item in inputs:
        source = Path(item).resolve()
        if source == target:
            raise YolorError(f"{option} {path} is the input {item}", hint=hint)
        if folder and source.is_relative_to(target):
            raise YolorError(f"{option} {path} holds the input {item}; its files could be overwritten", hint=hint)


def atomic_write(
    path: Path,
    write: Callable[[BinaryIO], None],
    check: Callable[[Path], None] | None = None,
    *,
    sync: bool = True,
) -> Path:
    """Write through a temporary file in the same folder, then rename over ``path``.

    A crash or kill mid-write leaves the previous file intact; Ctrl-C waits for the write and the
    rename to end. ``check`` reads the finished temporary file back (an export verifying itself on a
    runtime) and raises to stop the rename: a file that fails its check never replaces anything. A
    check may take a while, so Ctrl-C is not held during it (nor during the write before it: the
    file would not be kept anyway). A full disk, whoever's words say so, ends in one
    :class:`DiskFullError` naming ``path``, with the temporary file gone. ``sync=False`` skips the
    fsync for many small files that can be made again (detect's images).
    """
    if check is None:
        with interrupts_deferred():
            return _atomic_write(path, write, None, sync)
    return _atomic_write(path, write, check, sync)


def _atomic_write(
    path: Path, write: Callable[[BinaryIO], None], check: Callable[[Path], None] | None, sync: bool
) -> Path:
    with reporting_disk_full(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temp_name, _mode_for(path))
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            if sync:
                os.fsync(stream.fileno())
        if check is not None:
            check(Path(temp_name))
            with interrupts_deferred():
                os.replace(temp_name, path)
        else:
            os.replace(temp_name, path)
    except BaseException as error:
        full = disk_full_error(error, path)  # before the temporary file frees its space
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        if full is not None:
            raise full from None
        if isinstance(error, OSError) and error.filename == temp_name:  # name the file the user knows
            raise OSError(error.errno, error.strerror, str(path)) from None
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
    in place, so a crash leaves either the old or the new folder, never a mix of both. A full disk
    is one :class:`DiskFullError`, as for :func:`atomic_write`.
    """
    with reporting_disk_full(path):
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
    except BaseException as error:
        full = disk_full_error(error, path)  # before the temporary folder frees its space
        shutil.rmtree(temp, ignore_errors=True)
        if old is not None and not path.exists():  # put the previous folder back
            os.replace(old / path.name, path)
        if full is not None:
            raise full from None
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

    Returns the backup's path when one was made. Identical content is left untouched. The backup is
    a copy made before the new text replaces the file atomically, so a failed write (a full disk)
    leaves the user's file where it was, and the backup it made is removed again.
    """
    data = text.encode("utf-8")
    backup = None
    if path.exists():
        if path.read_bytes() == data:
            return None
        backup = _free_backup_path(path)
        shutil.copy2(path, backup)
    try:
        atomic_write(path, lambda stream: stream.write(data))
    except BaseException:
        if backup is not None:
            backup.unlink(missing_ok=True)
        raise
    return backup
