"""``yolor eval`` and validation while training on awkward data: a val split without a labelled
object, and ``--single-cls`` on a model with several classes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import make_shapes_dataset
from tests.test_cli import invoke
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model

NAMES = ["circle", "rectangle", "triangle"]
IMG = "64"


@pytest.fixture(scope="module")
def unlabelled_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared dataset whose val images all have empty label files (backgrounds only)."""
    root = make_shapes_dataset(tmp_path_factory.mktemp("empty_val") / "voc", images=8, seed=4, val=0.5)
    for line in (root / "val.txt").read_text().split():
        (root / "labels" / f"{Path(line).stem}.txt").write_text("")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=len(NAMES))
    path = tmp_path_factory.mktemp("weights") / "w.pt"
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=NAMES), path)
    return path


def test_eval_of_a_val_split_without_objects_reports_map_0_and_says_why(unlabelled_val: Path, weights: Path) -> None:
    data = str(unlabelled_val / "data.yaml")
    for metric in ("coco", "yolor"):
        result = invoke("eval", "-w", str(weights), "--data", data, "--img-size", IMG, "--metric", metric, "--json")
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert (payload["instances"], payload["map50"], payload["map"]) == (0, 0.0, 0.0)
        assert payload["images"] == 4
        assert "no labelled objects in the val split" in " ".join(result.stderr.split())
    table = invoke("eval", "-w", str(weights), "--data", data, "--img-size", IMG)
    assert table.exit_code == 0, table.output
    assert "no labelled objects in the val split" in " ".join(table.output.split())


def test_training_with_a_val_split_without_objects_keeps_its_epoch(unlabelled_val: Path, tmp_path: Path) -> None:
    result = invoke(
        "train",
        "--cfg",
        "yolor_csp_tiny",
        "--data",
        str(unlabelled_val / "data.yaml"),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--img-size",
        IMG,
        "--workers",
        "0",
        "--device",
        "cpu",
        "--project",
        str(tmp_path / "runs"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert "no labelled objects in the val split" in " ".join(result.stderr.split())  # said, once
    assert result.stderr.count("no labelled objects") == 1
    weights_dir = tmp_path / "runs" / "exp" / "weights"
    assert (weights_dir / "last.pt").is_file() and (weights_dir / "best.pt").is_file()
    with (tmp_path / "runs" / "exp" / "results.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["epoch"]) for row in rows] == [0]
    assert float(rows[0]["map50"]) == 0.0 and float(rows[0]["map"]) == 0.0


def test_single_cls_on_a_multi_class_model_names_the_flag(unlabelled_val: Path, weights: Path) -> None:
    result = invoke("eval", "-w", str(weights), "--data", str(unlabelled_val / "data.yaml"), "--single-cls")
    message = " ".join(result.stderr.split())
    assert result.exit_code == 1, result.output
    assert "--single-cls makes the data one class but the model has 3" in message
    assert "drop --single-cls or evaluate a model trained with it" in message
    assert "fix names" not in message and "Traceback" not in result.output
