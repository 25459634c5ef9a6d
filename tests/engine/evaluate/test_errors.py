"""TIDE's error breakdown (``yolor eval --errors``) on hand-made images where each error type is known,
and ``yolor eval --compare``: on two prediction files and on a model against its pruned copy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_shapes_dataset
from tests.test_cli import invoke
from yolor_cli.engine.evaluate.compare import image_changes
from yolor_cli.engine.evaluate.errors import ERROR_TYPES, error_breakdown
from yolor_cli.engine.evaluate.metrics import ImageDetections
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model

GT1, GT2 = [0, 0, 100, 100], [200, 200, 300, 300]
SHIFTED2 = [250, 250, 350, 350]  # IoU 1/7 with GT2: between the background and the foreground thresholds
FAR = [600, 600, 700, 700]  # touches no object


def image(dets: list[tuple[list[float], float, int]], gt_classes: tuple[int, int] = (0, 0)) -> ImageDetections:
    return ImageDetections(
        boxes=np.array([d[0] for d in dets], dtype=np.float64).reshape(-1, 4),
        scores=np.array([d[1] for d in dets]),
        classes=np.array([d[2] for d in dets], dtype=int),
        gt_boxes=np.array([GT1, GT2], dtype=np.float64),
        gt_classes=np.array(gt_classes, dtype=int),
    )


# Each case: one image with two objects (of class 0 unless said); the first always found (score 0.9), and detections
# built so that exactly one error type occurs. The error detection scores above the true positive so
# that it costs precision.
CASES = {
    "loc": [(GT1, 0.9, 0), (GT2, 0.5, 0), (SHIFTED2, 0.95, 0)],
    "cls": [(GT1, 0.9, 0), (GT2, 0.95, 1)],
    # GT2 is of class 1 here: a class-0 detection poorly placed on it is both errors at once.
    "both": [(GT1, 0.9, 0), (GT2, 0.5, 1), (SHIFTED2, 0.95, 0)],
    "dupe": [(GT1, 0.9, 0), (GT1, 0.8, 0), (GT2, 0.7, 0)],
    "bkg": [(GT1, 0.9, 0), (GT2, 0.5, 0), (FAR, 0.95, 0)],
    "missed": [(GT1, 0.9, 0)],
}


@pytest.mark.parametrize("kind", ERROR_TYPES)
def test_one_error_type_has_a_positive_dap_and_the_others_none(kind: str) -> None:
    gt_classes = (0, 1) if kind == "both" else (0, 0)
    breakdown = error_breakdown([image(CASES[kind], gt_classes)], nc=2)
    overall = breakdown.overall
    for metric in (overall.map50, overall.map):
        assert metric[kind] > 0.1, (kind, metric)
        assert all(metric[other] == 0 for other in ERROR_TYPES if other != kind), (kind, metric)
    assert overall.counts[kind] == 1
    assert sum(overall.counts.values()) == 1
    assert overall.base_map50 < 1
    # A class without objects is out of the mean, as in eval's mAP.
    assert list(breakdown.per_class) == sorted(set(gt_classes))


def test_missed_dap_is_the_ap_of_full_recall_less_the_ap_of_half() -> None:
    overall = error_breakdown([image(CASES["missed"])], nc=1).overall
    half = 51 / 101  # precision 1 read at the recall points 0.00 .. 0.50
    assert overall.base_map50 == pytest.approx(half)
    assert overall.map50["missed"] == pytest.approx(1 - half)
    assert overall.map["missed"] == pytest.approx(1 - half)


def test_a_loc_error_on_an_object_already_found_is_removed_when_fixed() -> None:
    near = [210, 210, 310, 310]  # IoU 0.68 with GT2: a hit at 0.5, a loc error from 0.7 up
    breakdown = error_breakdown([image([(GT1, 0.9, 0), (near, 0.8, 0), (SHIFTED2, 0.95, 0)])], nc=1)
    overall = breakdown.overall
    assert overall.map50 == {**dict.fromkeys(ERROR_TYPES, 0.0), "loc": overall.map50["loc"]}
    assert overall.counts == {**dict.fromkeys(ERROR_TYPES, 0), "loc": 1}
    # At 0.5 GT2 is found by `near`: SHIFTED2 is removed (precision back to 1), not made a second hit.
    assert overall.base_map50 + overall.map50["loc"] == pytest.approx(1.0)
    assert overall.map["loc"] > overall.map50["loc"]  # from 0.7 up GT2 is lost, and the fix finds it


def test_per_class_figures_put_the_error_on_its_class() -> None:
    dets = [(GT1, 0.9, 0), (GT2, 0.5, 1), (SHIFTED2, 0.95, 1)]
    breakdown = error_breakdown([image(dets, gt_classes=(0, 1))], nc=2)
    assert set(breakdown.per_class) == {0, 1}
    assert all(value == 0 for value in breakdown.per_class[0].map50.values())
    assert breakdown.per_class[0].base_map50 == pytest.approx(1.0)
    assert breakdown.per_class[1].map50["loc"] > 0.3
    assert breakdown.per_class[1].counts["loc"] == 1
    # The overall gain is the mean over the two classes.
    assert breakdown.overall.map50["loc"] == pytest.approx(breakdown.per_class[1].map50["loc"] / 2)


def test_an_image_without_objects_makes_every_detection_background() -> None:
    empty = ImageDetections(
        np.array([GT1], dtype=np.float64), np.array([0.99]), np.array([0]), np.zeros((0, 4)), np.zeros(0, int)
    )
    breakdown = error_breakdown([image([(GT1, 0.9, 0), (GT2, 0.8, 0)]), empty], nc=1)
    assert breakdown.overall.counts["bkg"] == 1
    assert breakdown.overall.map50["bkg"] > 0
    assert all(breakdown.overall.map50[k] == 0 for k in ERROR_TYPES if k != "bkg")


def test_image_changes_put_the_image_that_got_worse_first() -> None:
    perfect = image([(GT1, 0.9, 0), (GT2, 0.9, 0)])
    lost_one = image([(GT1, 0.9, 0)])
    gained_fp = image([(GT1, 0.9, 0), (GT2, 0.9, 0), (FAR, 0.3, 0)])
    low_score = image([(GT1, 0.9, 0), (GT2, 0.9, 0), (FAR, 0.1, 0)])  # under the 0.25 score: no change
    changes = image_changes(
        [perfect, perfect, perfect, perfect],
        ["a", "b", "c", "d"],
        [gained_fp, lost_one, perfect, low_score],
        list("abcd"),
    )
    assert [c.image for c in changes] == ["b", "a"]
    assert (changes[0].b.tp, changes[0].b.fn, changes[0].change) == (1, 1, pytest.approx(2 / 3 - 1))
    assert (changes[1].b.fp, changes[1].change) == (1, pytest.approx(0.8 - 1))


# ---- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("errors") / "voc", images=8, seed=3, val=0.5)


def _truth_predictions(root: Path, path: Path, *, extra: list[dict] | None = None, drop: int = 0) -> Path:
    """A COCO results file made from the val labels (perfect detections), with ``extra`` rows added and
    the first ``drop`` objects left out."""
    from PIL import Image

    rows = []
    for line in (root / "val.txt").read_text().split():
        image_path = root / line
        width, height = Image.open(image_path).size
        for label in (root / "labels" / f"{image_path.stem}.txt").read_text().splitlines():
            cls, cx, cy, w, h = (float(v) for v in label.split())
            box = [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]
            rows.append({"image_id": image_path.stem, "category_id": int(cls), "bbox": box, "score": 0.9})
    rows = rows[drop:] + (extra or [])
    path.write_text(json.dumps(rows))
    return path


def test_eval_errors_json_and_files_for_a_predictions_file(dataset: Path, tmp_path: Path) -> None:
    first = (dataset / "val.txt").read_text().split()[0]
    stray = {"image_id": Path(first).stem, "category_id": 0, "bbox": [0, 0, 2, 2], "score": 0.99}
    predictions = _truth_predictions(dataset, tmp_path / "p.json", extra=[stray])
    common = ("eval", "--predictions", str(predictions), "--data", str(dataset / "data.yaml"), "--errors")
    result = invoke(*common, "--json", "--project", str(tmp_path), "--name", "e")
    assert result.exit_code == 0, result.output
    errors = json.loads(result.stdout)["errors"]
    for kind in ERROR_TYPES:
        assert set(errors[kind]) == {"map50", "map", "count"}
    assert errors["bkg"]["count"] == 1 and errors["bkg"]["map50"] > 0
    assert all(errors[k]["map50"] == 0 for k in ERROR_TYPES if k != "bkg")
    assert errors["base"]["map50"] < 1
    assert {row["class"] for row in errors["per_class"]} <= {"circle", "rectangle", "triangle"}
    assert all(set(ERROR_TYPES) <= set(row) for row in errors["per_class"])
    assert json.loads((tmp_path / "e" / "errors.json").read_text()) == errors
    assert (tmp_path / "e" / "errors.png").stat().st_size > 1000
    table = invoke(*common, "--project", str(tmp_path), "--name", "t")
    assert table.exit_code == 0, table.output
    assert "Errors (TIDE)" in table.output and "all (mAP50-95)" in table.output


def test_eval_compare_two_prediction_files_shows_the_lost_object_first(dataset: Path, tmp_path: Path) -> None:
    a = _truth_predictions(dataset, tmp_path / "a.json")
    b = _truth_predictions(dataset, tmp_path / "b.json", drop=1)
    result = invoke(
        "eval", "--predictions", str(a), "--compare", str(b), "--data", str(dataset / "data.yaml"), "--json",
        "--project", str(tmp_path), "--name", "c",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    compare = json.loads(result.stdout)["compare"]
    assert compare["delta"]["map"] < 0
    assert compare["errors"]["missed"]["delta"]["map50"] > 0
    assert compare["images_changed"] == 1
    assert compare["images"][0]["image"] == json.loads(a.read_text())[0]["image_id"]  # the dropped object's
    assert compare["images"][0]["b"]["fn"] == 1 and compare["images"][0]["change"] < 0
    assert json.loads((tmp_path / "c" / "compare.json").read_text()) == compare


def test_eval_compare_a_model_and_its_pruned_copy(dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
    source = tmp_path / "w.pt"
    save_checkpoint(
        Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=["circle", "rectangle", "triangle"]), source
    )
    pruned = tmp_path / "pruned.pt"
    done = invoke(
        "prune", "global", "-w", str(source), "--ratio", "0.3", "-o", str(pruned), "--img-size", "64", "--no-latency"
    )
    assert done.exit_code == 0, done.output
    common = (
        "eval",
        "-w",
        str(source),
        "--compare",
        str(pruned),
        "--data",
        str(dataset / "data.yaml"),
        "--img-size",
        "64",
    )
    result = invoke(*common, "--json", "--project", str(tmp_path), "--name", "c")
    assert result.exit_code == 0, result.output
    compare = json.loads(result.stdout)["compare"]
    assert compare["a"]["model"] == str(source) and compare["b"]["model"] == str(pruned)
    assert set(compare["errors"]) == set(ERROR_TYPES)
    assert compare["errors_a"]["base"]["map"] >= 0 and "per_class" in compare["errors_b"]
    changes = [image["change"] for image in compare["images"]]
    assert changes == sorted(changes)
    assert (tmp_path / "c" / "compare.json").is_file()
    table = invoke(*common, "--project", str(tmp_path), "--name", "t")
    assert table.exit_code == 0, table.output
    assert "Error dAP on mAP50-95" in table.output and "Images changed" in table.output
    same = invoke("eval", "-w", str(source), "--compare", str(source), "--data", str(dataset / "data.yaml"))
    assert same.exit_code == 1 and "is the model being evaluated" in same.stderr
