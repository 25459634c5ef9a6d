"""Dataset files as careless or hostile users leave them (issue 20 #8, #11, #12, #17): FIFOs where
files belong, images too large to decode, class names that span lines, and re-runs that must
change nothing."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import make_shapes_dataset
from tests.engine.data.messy_voc import make_messy_voc
from tests.test_cli import invoke
from yolor_cli.engine.data.convert import parse_class_list
from yolor_cli.engine.data.labels import collect_image_files, scan_labels
from yolor_cli.engine.data.prepare import prepare_dataset
from yolor_cli.engine.errors import DataError

HANG_LIMIT_S = 20.0


@pytest.fixture
def fifos() -> Iterator[Callable[[Path], Path]]:
    """Makes FIFOs; afterwards opens each for writing once, which frees a reader that a regression
    left blocked on it (so a failing test ends instead of hanging the run)."""
    made: list[Path] = []

    def make(path: Path) -> Path:
        if path.exists():
            path.unlink()
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    for path in made:
        with contextlib.suppress(OSError):  # no reader waiting: nothing to free
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def within_limit(call: Callable[[], Any]) -> Any:
    """``call()`` on a thread; fails the test when it has not returned in HANG_LIMIT_S."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # re-raised on the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_LIMIT_S)
    assert not thread.is_alive(), f"still blocked after {HANG_LIMIT_S} s: a FIFO was opened"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    return make_shapes_dataset(tmp_path / "voc", images=8, seed=3, val=0.5)


def test_fifo_images_labels_and_cache_are_skipped_with_a_reason(shapes: Path, fifos) -> None:
    """#8: a train.txt that lists a FIFO, a label file that is a FIFO, and a FIFO label cache."""
    train = (shapes / "train.txt").read_text().split()
    fifo_image = fifos(shapes / "images" / "pipe.jpg")
    fifo_label = fifos(shapes / "labels" / f"{Path(train[0]).stem}.txt")
    (shapes / "train.txt").write_text("\n".join([*train, str(fifo_image)]) + "\n")
    fifos(shapes / "labels.cache.json")
    images = collect_image_files([shapes / "train.txt"])
    scan = within_limit(lambda: scan_labels(images, nc=3))
    assert len(scan.records) == len(train) - 1
    assert any(str(fifo_image) in w and "named pipe (FIFO)" in w and "image skipped" in w for w in scan.warnings)
    assert any(str(fifo_label) in w and "named pipe (FIFO)" in w for w in scan.warnings), scan.warnings


def test_eval_of_a_split_that_lists_a_fifo_ends(shapes: Path, fifos, tmp_path: Path) -> None:
    """#8 through the command: eval --predictions (no model needed) on a val.txt naming a FIFO."""
    fifo = fifos(shapes / "images" / "pipe.jpg")
    with (shapes / "val.txt").open("a") as stream:
        stream.write(f"{fifo}\n")
    predictions = tmp_path / "p.json"
    predictions.write_text(json.dumps([]))
    data = str(shapes / "data.yaml")
    result = within_limit(lambda: invoke("eval", "--predictions", str(predictions), "--data", data))
    assert result.exit_code == 0, result.output
    assert "named pipe (FIFO)" in " ".join(result.stderr.split())


def test_an_image_too_large_to_decode_is_skipped_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#11: PIL refuses images over twice MAX_IMAGE_PIXELS; a limit below the messy set's largest
    images stands in for a 30000x30000 file. Images between the limit and twice it (PIL's warning)
    are used, without the warning on the terminal."""
    root = make_messy_voc(tmp_path / "voc")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 9000)  # 200x100 and 160x120 refused; 100x100 warned
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        result = invoke("dataset", "prepare", "--root", str(root), "--classes", "cat,dog", "--json")
    assert result.exit_code == 0, result.output
    reasons = {Path(item["file"]).name: item["reason"] for item in json.loads(result.stdout)["skipped"]}
    assert reasons["cat_1.jpg"].startswith("image too large to decode safely (20,000 pixels")
    assert reasons["dog_1.png"].startswith("image too large to decode safely")
    assert "cat_2.JPG" not in reasons  # 100x100: PIL only warns, and it is used
    table = invoke("dataset", "prepare", "--root", str(root), "--classes", "cat,dog")
    assert table.exit_code == 0 and "image too large to decode safely" in " ".join(table.stdout.split())


def _annotation(name: str, image: str) -> str:
    return (
        f"<annotation><filename>{image}</filename><size><width>100</width><height>100</height></size>"
        f"<object><name>{name}</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>60</xmax><ymax>60</ymax>"
        "</bndbox></object></annotation>"
    )


def test_class_names_are_single_lines_so_classes_names_has_nc_lines(tmp_path: Path) -> None:
    """#12: pretty-printed and wrapped names are one class; a control character skips the file."""
    root = make_messy_voc(tmp_path / "voc")
    annotations, images = root / "Annotations", root / "JPEGImages"
    for index, name in enumerate(["\n    big\n    dog\n  ", "big dog", "\tbig  dog ", "big\r\ndog"]):
        (images / f"wrapped_{index}.jpg").write_bytes((images / "cat_4.jpg").read_bytes())
        (annotations / f"wrapped_{index}.xml").write_text(_annotation(name, f"wrapped_{index}.jpg"))
    (images / "control.jpg").write_bytes((images / "cat_4.jpg").read_bytes())
    (annotations / "control.xml").write_text(_annotation("bad&#127;name", "control.jpg"))
    result = prepare_dataset(root, val=0.2, test=0.0, seed=0)
    assert result.classes == ["alien", "big dog", "bird", "cat", "dog"]
    assert result.objects_per_class["big dog"] == 4
    lines = (root / "classes.names").read_text().splitlines()
    assert lines == result.classes
    skipped = {Path(item.file).name: item.reason for item in result.skipped}
    assert (
        skipped["control.xml"]
        == "unusable class name (the class name 'bad\\x7fname' holds the control character '\\x7f')"
    )


def test_class_lists_are_normalised_or_refused_naming_their_source(tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("big\tdog\n\n cat \n")
    assert parse_class_list(None, names) == ["big dog", "cat"]
    assert parse_class_list("big \x0b dog, cat", None) == ["big dog", "cat"]
    with pytest.raises(DataError, match=r"--classes: the class name 'a\\x01b' holds the control character"):
        parse_class_list("a\x01b,c", None)
    names.write_text("ok\nbad\x7f\n")
    with pytest.raises(DataError, match="names.txt: the class name"):
        parse_class_list(None, names)


def test_a_second_prepare_rewrites_no_label_file(tmp_path: Path) -> None:
    """#17: the README says re-running rewrites nothing; labels included (a read-only copy works)."""
    root = make_messy_voc(tmp_path / "voc")
    prepare_dataset(root, classes=["cat", "dog"], val=0.2, test=0.1, seed=0)
    before = {path.name: path.stat().st_mtime_ns for path in root.rglob("*.txt")}
    prepare_dataset(root, classes=["cat", "dog"], val=0.2, test=0.1, seed=0)
    after = {path.name: path.stat().st_mtime_ns for path in root.rglob("*.txt")}
    assert after == before


def test_a_failed_prepare_leaves_the_previous_split_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """#17: a failure while the labels are written leaves ImageSets, lists and data.yaml as they were."""
    root = make_messy_voc(tmp_path / "voc")
    prepare_dataset(root, classes=["cat", "dog"], val=0.2, test=0.1, seed=0)
    small = sorted(root.glob("ImageSets/*.txt")) + sorted(root.glob("*.txt")) + [root / "data.yaml"]
    before = {path: path.read_bytes() for path in small}
    calls = {"n": 0}
    real_bytes, real_text = Path.write_bytes, Path.write_text

    def full_disk_at_the_third_label(path: Path) -> None:
        if path.parent.name == "labels":
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(28, "No space left on device")

    def write_bytes(self: Path, data: bytes) -> int:
        full_disk_at_the_third_label(self)
        return real_bytes(self, data)

    def write_text(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        full_disk_at_the_third_label(self)
        return real_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(OSError):
        prepare_dataset(root, classes=["cat"], val=0.3, test=0.2, seed=5)
    assert {path: path.read_bytes() for path in small} == before
    assert not list(root.rglob("*.bak"))


def test_an_image_id_of_a_skipped_image_is_reported_once(shapes: Path, tmp_path: Path) -> None:
    """#17: an image_id naming a listed image that the scan skipped (missing here) was reported by
    the scan and again as an unknown image_id; a truly unknown one is still reported."""
    with (shapes / "val.txt").open("a") as stream:
        stream.write(f"{shapes / 'images' / 'gone_away.jpg'}\n")
    rows = [{"image_id": stem, "category_id": 0, "bbox": [1, 1, 5, 5], "score": 0.5} for stem in ("gone_away", "nope")]
    predictions = tmp_path / "p.json"
    predictions.write_text(json.dumps(rows))
    result = invoke("eval", "--predictions", str(predictions), "--data", str(shapes / "data.yaml"))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("gone_away") == 1, result.stderr
    assert "1 image_id values name no val image" in result.stderr and "'nope'" in result.stderr
