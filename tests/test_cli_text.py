"""Names are data: class and file names that look like Rich markup or emoji codes print verbatim
through every command that shows them (issue 20 #4)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.test_cli import invoke
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["[/b]", "[bold]x", ":smile:"]
STEMS = ["[red]_{}", "[bold]x_{}", ":smile:_{}"]  # file names that are markup and an emoji code too
IMG = "64"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _voc(root: Path) -> Path:
    """Four images per class, each with one box of that class; one unreadable image."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    rng = np.random.default_rng(0)
    for index in range(12):
        name, stem = CLASSES[index % 3], STEMS[index % 3].format(index)
        image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.jpg"), image)
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>64</width><height>64</height></size>"
            f"<object><name>{name}</name><bndbox><xmin>8</xmin><ymin>8</ymin><xmax>40</xmax><ymax>40</ymax>"
            "</bndbox></object></annotation>"
        )
    (root / "JPEGImages" / ":smile:[red]broken.jpg").write_bytes(b"not an image")
    (root / "Annotations" / ":smile:[red]broken.xml").write_text(
        "<annotation><filename>:smile:[red]broken.jpg</filename><object><name>[/b]</name><bndbox><xmin>1</xmin>"
        "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _voc(tmp_path_factory.mktemp("names") / "voc")
    result = invoke("dataset", "prepare", "--root", str(root), "--val", "0.5", "--test", "0")
    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in CLASSES), result.stdout
    assert ":smile:[red]broken.jpg" in _flat(result.stdout) and "😄" not in result.output
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=len(CLASSES))
    path = tmp_path_factory.mktemp("weights") / "w.pt"
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=CLASSES), path)
    return path


def test_prepare_and_voc2yolo_print_names_verbatim(prepared: Path) -> None:
    assert (prepared / "classes.names").read_text().splitlines() == sorted(CLASSES)
    result = invoke("dataset", "voc2yolo", "--root", str(prepared), "--classes", ",".join(CLASSES))
    assert result.exit_code == 0, result.output
    assert all(name in result.stdout for name in CLASSES) and "😄" not in result.output
    assert ":smile:[red]broken.jpg" in _flat(result.stdout)


def test_eval_prints_class_names_verbatim(prepared: Path, weights: Path) -> None:
    result = invoke("eval", "-w", str(weights), "--data", str(prepared / "data.yaml"), "--img-size", IMG)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if any(name in line for name in CLASSES)]
    assert len(rows) == 3, result.stdout
    assert "😄" not in result.output


def test_detect_prints_class_and_file_names_verbatim(prepared: Path, weights: Path, tmp_path: Path) -> None:
    source = prepared / "JPEGImages"
    args = ["--source", str(source), "-w", str(weights), "--img-size", IMG, "--conf", "0.001"]
    result = invoke("detect", *args, "--project", str(tmp_path), "--nosave")
    assert result.exit_code == 0, result.output
    counts = json.loads(invoke("detect", *args, "--project", str(tmp_path), "--nosave", "--json").stdout)
    assert counts["detections"], "the untrained model should still find something at 0.001"
    for name in counts["detections"]:
        assert name in result.stdout, result.stdout
    assert ":smile:[red]broken.jpg" in _flat(result.stderr) and "😄" not in result.output


def test_info_prints_class_names_verbatim(weights: Path) -> None:
    result = invoke("info", "--weights", str(weights))
    assert result.exit_code == 0, result.output
    assert f"3 ({', '.join(CLASSES)})" in result.stdout and "😄" not in result.output
