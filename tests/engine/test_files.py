"""Atomic writes: the previous file survives a failed write, and Ctrl-C waits for the write to end."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import atomic_folder, atomic_write


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def broken(stream) -> None:
        stream.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_ctrl_c_during_a_write_is_raised_after_it(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"

    def interrupted(stream) -> None:
        stream.write(b"first half ")
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does, in the middle of torch.save
        stream.write(b"second half")

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (CI may ignore SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_write(target, interrupted)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the usual handler is back
    finally:
        signal.signal(signal.SIGINT, before)
    assert target.read_bytes() == b"first half second half"


def test_an_ignored_sigint_stays_ignored(tmp_path: Path) -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup
    try:
        atomic_write(tmp_path / "x", lambda stream: (os.kill(os.getpid(), signal.SIGINT), stream.write(b"x")))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    assert (tmp_path / "x").read_bytes() == b"x"


def test_written_files_get_the_usual_permissions_and_a_failed_check_keeps_the_old_file(tmp_path: Path) -> None:
    target = atomic_write(tmp_path / "model.onnx", lambda stream: stream.write(b"new"))
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600: others may read it as usual
    target.chmod(0o600)
    atomic_write(target, lambda stream: stream.write(b"new"))
    assert target.stat().st_mode & 0o777 == 0o600  # a replaced file keeps the mode its owner gave it

    def reject(written: Path) -> None:
        assert written.read_bytes() == b"bad" and written != target
        raise ValueError("does not run")

    with pytest.raises(ValueError, match="does not run"):
        atomic_write(target, lambda stream: stream.write(b"bad"), reject)
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_atomic_folder_replaces_a_folder_whole_and_keeps_it_when_the_check_fails(tmp_path: Path) -> None:
    target = tmp_path / "m_openvino_model"

    def write(version: str) -> Callable[[Path], None]:
        return lambda folder: (folder / "m.xml").write_text(version)

    atomic_folder(target, write("one"))
    assert (target / "m.xml").read_text() == "one"

    def refuse(folder: Path) -> None:
        assert (folder / "m.xml").read_text() == "two"  # the check reads the new files before they take over
        raise YolorError("does not agree")

    with pytest.raises(YolorError, match="does not agree"):
        atomic_folder(target, write("two"), refuse)
    assert (target / "m.xml").read_text() == "one"
    atomic_folder(target, write("three"))
    assert (target / "m.xml").read_text() == "three"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m_openvino_model"]  # no temporary folder left
