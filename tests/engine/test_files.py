"""Atomic writes: the previous file survives a failed write, and Ctrl-C waits for the write to end."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.files import DiskFullError, atomic_folder, atomic_write, guard_output
from yolor_cli.engine.runs import new_run_dir


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


# --- a full disk: one message naming the path, and no partial file (issue 20 #7) ---


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_message_with_the_path_and_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def fills_the_disk(stream) -> None:
        stream.write(b"half")
        _enospc()

    with pytest.raises(DiskFullError, match=f"no space left on device: {target}"):
        atomic_write(target, fills_the_disk)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_torch_save_out_of_space_is_the_same_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: torch.nn.Module
) -> None:
    """torch.save writes through C++ and says only "inline_container.cc ... unexpected pos": the
    free space of the file system tells a full disk apart from other failures."""
    from yolor_cli.engine import files
    from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint

    def cpp_failure(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", cpp_failure)
    target = tmp_path / "weights" / "best.pt"
    checkpoint = Checkpoint(cfg=tiny_model.cfg, model_state={}, names=None)
    with pytest.raises(RuntimeError, match="inline_container"):  # with room left: not called a full disk
        save_checkpoint(checkpoint, target)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: shutil_usage(total=1 << 30, used=1 << 30, free=0))
    with pytest.raises(DiskFullError, match=f"no space left on device: {target}"):
        save_checkpoint(checkpoint, target)
    assert list(target.parent.iterdir()) == []


def shutil_usage(*, total: int, used: int, free: int) -> object:
    import shutil

    return shutil._ntuple_diskusage(total, used, free)  # type: ignore[attr-defined]


def test_a_full_disk_while_writing_a_folder_leaves_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "m_openvino_model"
    atomic_folder(target, lambda folder: (folder / "m.xml").write_text("one"))

    def fills_the_disk(folder: Path) -> None:
        (folder / "m.xml").write_text("tw")
        _enospc()

    with pytest.raises(DiskFullError, match="no space left on device"):
        atomic_folder(target, fills_the_disk)
    assert (target / "m.xml").read_text() == "one" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_detect_images_on_a_full_disk_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's tofile said "121645 requested and 4096 written"; images go through atomic_write now."""
    import numpy as np

    from yolor_cli.engine.data.images import write_image

    real_fdopen = os.fdopen

    class FullStream:
        def __init__(self, stream) -> None:
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            self.stream.close()

        def write(self, data: bytes) -> int:
            self.stream.write(data[:4096])
            _enospc()
            return 0

    monkeypatch.setattr(os, "fdopen", lambda handle, mode: FullStream(real_fdopen(handle, mode)))
    with pytest.raises(DiskFullError, match="no space left on device: .*a.jpg"):
        write_image(tmp_path / "a.jpg", np.zeros((64, 64, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


# --- the one writer guard ---


def test_guard_refuses_inputs_paths_under_files_and_replaces_only_what_it_may(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"w")
    with pytest.raises(YolorError, match="is the input"):
        guard_output(weights, inputs=[weights], overwrite=True)
    with pytest.raises(YolorError, match="holds the input"):
        guard_output(tmp_path, inputs=[weights], overwrite=True, folder=True)
    with pytest.raises(YolorError, match=r"is under .*w\.pt, which is a file"):  # found before any work
        guard_output(weights / "x.onnx")
    with pytest.raises(YolorError, match="must end in .pt"):
        guard_output(tmp_path / "m.onnx", suffixes=(".pt",))
    with pytest.raises(YolorError, match="already exists"):
        guard_output(weights)
    assert guard_output(weights, overwrite=True) == weights
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.xml").write_text("<annotation/>")
    with pytest.raises(YolorError, match="not ours; nothing is written there"):  # a foreign folder: never
        guard_output(mine, overwrite=True, folder=True, foreign=lambda path: "is not ours")
    assert guard_output(mine, folder=True, foreign=lambda path: None, rewrite_own=True) == mine
    with pytest.raises(YolorError, match="--overwrite to replace it anyway"):  # a foreign file: only when asked
        guard_output(weights, foreign=lambda path: "is not ours")
    assert guard_output(weights, overwrite=True, foreign=lambda path: "is not ours") == weights


# --- run folders (issue 20 #3, #13) ---


@pytest.mark.parametrize("name", ["", ".", "..", "../../x", "a/b", "a\\b"])
def test_run_names_are_one_folder_inside_the_project(tmp_path: Path, name: str) -> None:
    with pytest.raises(YolorError, match="is not a folder name"):
        new_run_dir(tmp_path / "out", name)
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_exist_ok_never_reuses_a_finished_training_run_or_a_folder_of_inputs(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "exp"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "last_001.pt").write_bytes(b"an earlier run's")
    with pytest.raises(YolorError, match=r"holds another run's weights \(weights/last_001.pt\)") as caught:
        new_run_dir(tmp_path / "runs", "exp", exist_ok=True, training=True)
    assert "--resume" in (caught.value.hint or "")
    assert new_run_dir(tmp_path / "runs", "exp", training=True) == run.with_name("exp2")
    images = tmp_path / "D" / "images"
    images.mkdir(parents=True)
    (images / "a.jpg").write_bytes(b"jpg")
    with pytest.raises(YolorError, match="holds the input"):
        new_run_dir(tmp_path / "D", "images", exist_ok=True, inputs=[images / "a.jpg"])
    assert new_run_dir(tmp_path / "D", "images", exist_ok=False, inputs=[images / "a.jpg"]).name == "images2"


def test_a_backup_write_on_a_full_disk_keeps_the_users_file_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """data.yaml edited by the user is kept as data.yaml.bak when prepare writes a new one; a full disk
    during that write must leave data.yaml itself where it was (not only a .bak), and no stray backup."""
    from yolor_cli.engine import files

    target = tmp_path / "data.yaml"
    target.write_text("nc: 2  # edited by hand\n")
    real_atomic_write = files.atomic_write

    def full_disk(path: Path, write: Callable, check: Callable | None = None) -> Path:
        _enospc()
        return real_atomic_write(path, write, check)

    monkeypatch.setattr(files, "atomic_write", full_disk)
    with pytest.raises(OSError):
        files.write_text_keeping_backup(target, "nc: 3\n")
    assert target.read_text() == "nc: 2  # edited by hand\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.yaml"]

    monkeypatch.setattr(files, "atomic_write", real_atomic_write)
    backup = files.write_text_keeping_backup(target, "nc: 3\n")
    assert backup is not None and backup.read_text() == "nc: 2  # edited by hand\n"
    assert target.read_text() == "nc: 3\n"


def test_a_failed_write_names_the_file_not_its_temporary_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused rename (an immutable file, a read-only mount) said ".val.txt.1_5gh_01.tmp"."""
    from yolor_cli.engine import files

    target = tmp_path / "val.txt"

    def refused(source: str, destination: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", source)

    monkeypatch.setattr(files.os, "replace", refused)
    with pytest.raises(PermissionError) as caught:
        atomic_write(target, lambda stream: stream.write(b"a\n"))
    assert caught.value.filename == str(target) and caught.value.errno == errno.EPERM
    assert [p.name for p in tmp_path.iterdir()] == []
