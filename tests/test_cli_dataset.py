"""``yolor dataset``: from a VOC folder to data.yaml on the command line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.engine.data.messy_voc import make_messy_voc
from tests.test_cli import invoke


def test_synth_then_prepare_then_split_then_voc2yolo(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    result = invoke("dataset", "synth", "--out", str(root), "--images", "12", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 12

    result = invoke("dataset", "prepare", "--root", str(root), "--val", "0.25", "--test", "0")
    assert result.exit_code == 0, result.output
    assert "Objects per class" in result.stdout and "circle" in result.stdout
    assert (root / "data.yaml").exists() and (root / "classes.names").exists()

    result = invoke("dataset", "split", "--root", str(root), "--val", "0.5", "--test", "0", "--json")
    assert json.loads(result.stdout)["images"] == {"train": 6, "val": 6, "test": 0}

    result = invoke("dataset", "voc2yolo", "--root", str(root), "--classes", "circle,triangle", "--json")
    payload = json.loads(result.stdout)
    assert payload["classes"] == ["circle", "triangle"] and payload["images"]["val"] == 6
    assert any("unknown class" in item["reason"] for item in payload["skipped"])


def test_prepare_lists_every_skipped_file(tmp_path: Path) -> None:
    root = make_messy_voc(tmp_path / "voc")
    result = invoke("dataset", "prepare", "--root", str(root), "--classes", "cat,dog")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    for expected in ("malformed XML", "missing image", "corrupt image", "unknown class", "degenerate box"):
        assert expected in text
    assert "difficult objects skipped" in result.stderr


def test_dataset_errors_exit_1(tmp_path: Path) -> None:
    result = invoke("dataset", "prepare", "--root", str(tmp_path / "none"))
    assert result.exit_code == 1 and "dataset folder not found" in result.stderr
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "images").mkdir()
    result = invoke("dataset", "prepare", "--root", str(tmp_path))
    assert result.exit_code == 1 and "no usable image" in " ".join(result.stderr.split())
    result = invoke("dataset", "voc2yolo", "--root", str(tmp_path), "--classes", "a", "--names", "x")
    assert result.exit_code == 1 and "either --classes or --names" in result.stderr
    assert invoke("dataset", "split", "--root", str(tmp_path), "--val", "2").exit_code == 2
