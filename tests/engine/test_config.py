"""data.yaml, hyperparameter and class-name files: what a user can get wrong in them, said clearly."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from yolor_cli.engine.config import load_data_config, load_data_names, load_hyp
from yolor_cli.engine.data.convert import parse_class_list
from yolor_cli.engine.errors import DataError, YolorError
from yolor_cli.engine.files import check_regular_file


@pytest.mark.parametrize("nc", ["three", "2.5", "-1", "0", "true", "'3'"])
def test_nc_that_is_not_a_positive_integer_says_so(tmp_path: Path, nc: str) -> None:
    data = tmp_path / "data.yaml"
    data.write_text(f"train: {tmp_path}\nnc: {nc}\nnames: [a, b, c]\n")
    for load in (load_data_config, load_data_names):
        with pytest.raises(DataError) as caught:
            load(data)
        assert caught.value.message.endswith("nc must be a positive whole number (the number of classes), got " + nc)
        assert "names lists" not in caught.value.message


def test_nc_alone_still_names_the_classes_by_number(tmp_path: Path) -> None:
    data = tmp_path / "data.yaml"
    data.write_text(f"train: {tmp_path}\nnc: 2\n")
    assert load_data_config(data).names == ("0", "1")
    data.write_text(f"train: {tmp_path}\nnc: two\n")
    with pytest.raises(DataError, match="nc must be a positive whole number"):
        load_data_config(data)


FIFO_GRACE_S = 5.0  # a read still blocked after this is the defect: end it so the test fails, not hangs


@contextlib.contextmanager
def _fifo_released_after(fifo: Path, seconds: float) -> Iterator[None]:
    """A reader blocked on ``fifo`` gets end-of-file after ``seconds`` (a writer opens and closes it)."""
    done = threading.Event()

    def release() -> None:
        if done.wait(seconds):
            return
        while not done.wait(0.05):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:  # ENXIO: no reader (yet)
                if exc.errno != errno.ENXIO:
                    raise

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def test_a_fifo_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: these calls hung before the check."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for call, what in (
        (load_data_config, "data file"),
        (load_data_names, "data file"),
        (load_hyp, "hyperparameter file"),
        (lambda path: parse_class_list(None, path), "class names file"),
    ):
        with _fifo_released_after(fifo, FIFO_GRACE_S), pytest.raises(YolorError) as caught:
            call(fifo)
        assert caught.value.message == f"{what} {fifo} is a named pipe (FIFO), not a regular file"
        assert caught.value.hint and "regular file" in caught.value.hint


def _message(call: Callable[[], object]) -> str:
    with pytest.raises(YolorError) as caught:
        call()
    return caught.value.message


def test_folders_devices_and_sockets_are_named_for_what_they_are(tmp_path: Path) -> None:
    assert _message(lambda: load_data_config(tmp_path)) == f"data file {tmp_path} is a folder, not a regular file"
    assert (
        _message(lambda: parse_class_list(None, Path("/dev/null")))
        == "class names file /dev/null is a character device, not a regular file"
    )
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert (
            _message(lambda: check_regular_file(path, "list file"))
            == f"list file {path} is a socket, not a regular file"
        )


def test_regular_files_and_symlinks_to_them_pass(tmp_path: Path) -> None:
    target = tmp_path / "names.txt"
    target.write_text("a\nb\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    check_regular_file(link, "class names file")
    assert parse_class_list(None, link) == ["a", "b"]
    check_regular_file(tmp_path / "missing.txt", "class names file")  # the read says "not found" in its words
    with pytest.raises(YolorError, match="data file not found"):
        load_data_config(tmp_path / "missing.yaml")


def test_a_list_file_named_in_data_yaml_must_be_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "val.txt"
    os.mkfifo(fifo)
    data = tmp_path / "data.yaml"
    data.write_text(f"train: {tmp_path}\nval: val.txt\nnames: [a]\n")
    assert (
        _message(lambda: load_data_config(data))
        == f"{data}: val entry {fifo} is a named pipe (FIFO), not a regular file"
    )
    data.write_text(f"train: [{tmp_path}]\nnames: [a]\n")  # folders of images are entries too
    assert load_data_config(data).train == (tmp_path,)


def _hyp_file(tmp_path: Path, **changes: str) -> Path:
    """The bundled scratch hyp with ``changes`` (YAML text per key) written over its values."""
    from yolor_cli.engine.model.bundled import configs_dir

    lines = []
    for line in (configs_dir() / "hyp" / "scratch.640.yaml").read_text().splitlines():
        key = line.split(":", 1)[0]
        lines.append(f"{key}: {changes.pop(key)}" if key in changes else line)
    path = tmp_path / "hyp.yaml"
    path.write_text("\n".join(lines + [f"{key}: {value}" for key, value in changes.items()]) + "\n")
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"lr0": ".nan"}, "lr0 is nan; it must be a finite number above 0"),
        ({"lr0": "0"}, "lr0 is 0; it must be a finite number above 0"),
        ({"scale": "-5"}, "scale is -5; it must be a number from 0 to below 1"),
        ({"weight_decay": ".inf"}, "weight_decay is inf; it must be a finite number of at least 0"),
        ({"momentum": "1"}, "momentum is 1; it must be a number from 0 to below 1"),
        ({"mosaic": "1.5"}, "mosaic is 1.5; it must be a number from 0 to 1"),
        ({"fliplr": "true"}, "fliplr is bool True; it must be a number from 0 to 1"),
        ({"mixup": "[0.1]"}, "mixup is list [0.1]; it must be a number from 0 to 1"),
        ({"hsv_h": "red"}, "hsv_h is the text 'red'; it must be a number from 0 to 1"),
        ({"anchor_t": "0.5"}, "anchor_t is 0.5; it must be a finite number of at least 1"),
        ({"lr0": "-1", "flipud": "2"}, "lr0 is -1; it must be a finite number above 0; flipud is 2; it must be"),
    ],
)
def test_hyperparameters_out_of_their_range_are_named_with_the_file(
    tmp_path: Path, changes: dict[str, str], expected: str
) -> None:
    path = _hyp_file(tmp_path, **changes)
    message = _message(lambda: load_hyp(path))
    assert message.startswith(f"{path}: {expected}")


def test_hyperparameter_files_name_unknown_keys_and_accept_numbers_yaml_reads_as_text(tmp_path: Path) -> None:
    assert _message(lambda: load_hyp(_hyp_file(tmp_path, lr_zero="0.01"))).endswith("unknown: lr_zero")
    assert load_hyp(_hyp_file(tmp_path, lr0="1e-3", warmup_epochs="3")).lr0 == 0.001  # YAML 1.1: 1e-3 is text


def test_every_hyperparameter_has_a_bound() -> None:
    import dataclasses

    from yolor_cli.engine.config import HYP_BOUNDS, Hyp, bundled_hyp_names

    assert list(HYP_BOUNDS) == [field.name for field in dataclasses.fields(Hyp)]
    for name in bundled_hyp_names():
        load_hyp(name)  # every bundled set is within the bounds


def test_data_yaml_class_names_follow_the_one_rule_for_names(tmp_path: Path) -> None:
    """A names list written by hand (or by another tool) may hold a line break: it becomes a space, as
    in XML files, and a control character is refused with the file named."""
    data = tmp_path / "data.yaml"
    data.write_text('names: ["traffic\\n  light", " dog "]\n')
    assert load_data_names(data) == ("traffic light", "dog")
    data.write_text('names: ["a\\u0001b"]\n')
    with pytest.raises(DataError, match=f"{data}: the class name 'a\\\\x01b' holds the control character"):
        load_data_names(data)
