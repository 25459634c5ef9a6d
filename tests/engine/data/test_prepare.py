"""VOC -> YOLO on a messy folder: every quirk handled and every skip explained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.engine.data.messy_voc import make_messy_voc
from yolor_cli.engine import files as files_module
from yolor_cli.engine.data.convert import parse_class_list, voc_box_to_yolo
from yolor_cli.engine.data.prepare import prepare_dataset, split_dataset, voc_to_yolo
from yolor_cli.engine.errors import DataError
from yolor_cli.engine.files import DiskFullError


def _reasons(result) -> dict[str, str]:
    return {Path(item.file).name: item.reason for item in result.skipped}


def _labels(root: Path, stem: str) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in (root / "labels" / f"{stem}.txt").read_text().splitlines()]


def _assert_rows(root: Path, stem: str, expected: list[list[float]]) -> None:
    np.testing.assert_allclose(np.array(_labels(root, stem)), np.array(expected), atol=1e-6)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    return make_messy_voc(tmp_path / "voc")


def test_prepare_handles_every_quirk_and_reports_skips(messy: Path) -> None:
    result = prepare_dataset(messy, val=0.2, test=0.1, seed=0)
    reasons = _reasons(result)
    assert reasons["broken.xml"].startswith("malformed XML")
    assert reasons["no_image.xml"] == "missing image"
    assert reasons["corrupt.jpg"].startswith("corrupt image")
    assert reasons["no_xml.jpg"] == "no annotation XML with the same name"
    assert "same name (bird_1.jpg)" in reasons["bird_1.png"]
    assert reasons["dog_3.xml"].startswith("degenerate box (1 dropped")
    assert "notes.txt" not in reasons  # not an image: ignored silently
    # Classes are inferred from the XML, stripped and sorted.
    assert result.classes == ["alien", "bird", "cat", "dog"]
    assert (messy / "classes.names").read_text() == "alien\nbird\ncat\ndog\n"


def test_label_values_follow_voc_semantics(messy: Path) -> None:
    prepare_dataset(messy, classes=["cat", "dog"], seed=0)
    # 1-based pixels 1..200 x 1..100 cover the whole 200x100 image.
    assert _labels(messy, "cat_1") == [[0, 0.5, 0.5, 1.0, 1.0]]
    # " cat " is stripped; pixels 11..60 are edges 10..60.
    assert _labels(messy, "cat_2") == [[0, 0.35, 0.45, 0.5, 0.5]]
    # No <size>: the image's 120x80 is used.
    _assert_rows(messy, "cat_3", [[0, 25 / 120, 0.25, 50 / 120, 0.5], [1, 85 / 120, 0.5, 70 / 120, 1.0]])
    # A wrong <size> (999x999) loses to the image; the box is clipped to 160x120.
    _assert_rows(messy, "dog_1", [[1, 0.5, 0.25, 1.0, 0.5]])
    # difficult=1 is skipped by default ...
    assert len(_labels(messy, "dog_2")) == 1
    # ... the degenerate box (xmax < xmin) is dropped, the good one kept.
    _assert_rows(messy, "dog_3", [[1, 0.22, 0.22, 0.36, 0.36]])
    # Background image: an empty label file, counted as background.
    assert (messy / "labels" / "empty_1.txt").read_text() == ""


def test_keep_difficult_and_unknown_classes(messy: Path) -> None:
    result = voc_to_yolo(messy, classes=["cat", "dog"], keep_difficult=True)
    assert len(_labels(messy, "dog_2")) == 2
    reasons = _reasons(result)
    assert reasons["alien_1.xml"] == "unknown class (1 x 'alien')"
    assert reasons["bird_1.xml"] == "unknown class (1 x 'bird')"
    assert _labels(messy, "alien_1") == []  # its only object is of an unknown class: a background image


def test_prepare_writes_data_yaml_lists_and_imagesets(messy: Path) -> None:
    result = prepare_dataset(messy, classes=["cat", "dog"], val=0.2, test=0.2, seed=0)
    data = yaml.safe_load((messy / "data.yaml").read_text())
    assert data == {
        "path": str(messy.resolve()),
        "train": "train.txt",
        "val": "val.txt",
        "test": "test.txt",
        "nc": 2,
        "names": ["cat", "dog"],
    }
    lists = {name: (messy / f"{name}.txt").read_text().splitlines() for name in ("train", "val", "test")}
    assert all(Path(p).is_absolute() and Path(p).exists() for paths in lists.values() for p in paths)
    sets = {name: set(Path(p).stem for p in paths) for name, paths in lists.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    usable = 21  # 9 cases + 12 generated + ... minus skipped files
    assert sum(map(len, sets.values())) == usable == sum(result.images.values())
    imagesets = {
        name: (messy / "ImageSets" / f"{name}.txt").read_text().split() for name in ("train", "val", "trainval")
    }
    assert sorted(imagesets["trainval"]) == sorted(imagesets["train"] + imagesets["val"])
    assert result.backgrounds == 3  # empty_1, and alien_1 / bird_1 whose only objects are not in the class list


def test_rerunning_is_safe_and_identical(messy: Path) -> None:
    prepare_dataset(messy, seed=3)
    before = {p: p.read_bytes() for p in messy.rglob("*") if p.is_file()}
    again = prepare_dataset(messy, seed=3)
    after = {p: p.read_bytes() for p in messy.rglob("*") if p.is_file()}
    assert before == after and again.backups == []


def test_user_edits_are_kept_as_backups(messy: Path) -> None:
    prepare_dataset(messy, seed=0)
    (messy / "data.yaml").write_text("# my notes\n")
    result = prepare_dataset(messy, seed=0)
    assert (messy / "data.yaml.bak").read_text() == "# my notes\n"
    assert messy / "data.yaml.bak" in result.backups


def test_a_failed_prepare_leaves_every_small_file_as_it_was(messy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepare_dataset(messy, val=0.2, seed=0)
    before = {p: p.read_bytes() for p in messy.rglob("*") if p.is_file() and "labels" not in p.parts}
    real_write = files_module.atomic_write

    def failing(path: Path, *args, **kwargs):  # the disk fills up after train.txt was replaced
        if path.name == "val.txt" and path.parent.name == "ImageSets":
            raise DiskFullError(f"no space left on device: {path}")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(files_module, "atomic_write", failing)
    with pytest.raises(DiskFullError):
        prepare_dataset(messy, val=0.4, seed=1)
    after = {p: p.read_bytes() for p in messy.rglob("*") if p.is_file() and "labels" not in p.parts}
    assert after == before  # ImageSets/train.txt is the old split again, and no .bak was left


def test_voc2yolo_reads_standard_imagesets_main(messy: Path) -> None:
    main = messy / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "train.txt").write_text("cat_1\ncat_2\nbroken\n")
    (main / "val.txt").write_text("dog_1\n")
    result = voc_to_yolo(messy)
    assert [Path(p).name for p in (messy / "train.txt").read_text().split()] == ["cat_1.jpg", "cat_2.JPG"]
    assert _reasons(result)["broken"] == "listed in ImageSets train.txt but not usable"
    assert result.images == {"train": 2, "val": 1, "test": 0}


def test_voc2yolo_without_imagesets_says_what_to_do(messy: Path) -> None:
    result = voc_to_yolo(messy)
    assert any("yolor dataset split" in note for note in result.notes)
    assert not (messy / "train.txt").exists()


def test_a_folder_with_nothing_usable_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text("<oops")
    (tmp_path / "images" / "a.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="no usable image.*: 1 malformed XML"):
        prepare_dataset(tmp_path)


def test_missing_folders_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        split_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no Annotations"):
        split_dataset(tmp_path)


def test_class_list_parsing(tmp_path: Path) -> None:
    assert parse_class_list(" a, b ,c", None) == ["a", "b", "c"]
    (tmp_path / "names").write_text("x\n\ny\n")
    assert parse_class_list(None, tmp_path / "names") == ["x", "y"]
    assert parse_class_list(None, None) is None
    with pytest.raises(DataError, match="more than once"):
        parse_class_list("a,a", None)
    with pytest.raises(DataError, match="either"):
        parse_class_list("a", tmp_path / "names")


def test_non_finite_coordinates_are_degenerate(tmp_path: Path) -> None:
    from yolor_cli.engine.data.voc import read_voc

    (tmp_path / "a.xml").write_text(
        "<annotation><object><name>x</name><bndbox><xmin>nan</xmin><ymin>1</ymin>"
        "<xmax>inf</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    assert read_voc(tmp_path / "a.xml").objects[0].box is None


def test_voc_box_conversion_edges() -> None:
    assert voc_box_to_yolo((1, 1, 10, 10), 10, 10) == (0.5, 0.5, 1.0, 1.0)
    assert voc_box_to_yolo((5, 5, 5, 9), 10, 10) == (0.45, 0.65, 0.1, 0.5)  # a one-pixel-wide box is kept
    assert voc_box_to_yolo((8, 8, 3, 9), 10, 10) is None  # xmax < xmin
    assert voc_box_to_yolo((20, 20, 30, 30), 10, 10) is None  # entirely outside
