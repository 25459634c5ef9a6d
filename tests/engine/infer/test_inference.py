"""NMS, the predictor's mapping back to original pixels, evaluation and detection end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import make_shapes_dataset
from yolor_cli.engine.boxes import non_max_suppression
from yolor_cli.engine.config import load_data_config
from yolor_cli.engine.data.loader import build_dataset
from yolor_cli.engine.errors import DataError
from yolor_cli.engine.evaluate.evaluator import evaluate_model, evaluate_predictions, ground_truth, write_predictions
from yolor_cli.engine.infer.detect import run_detect
from yolor_cli.engine.infer.predictor import Predictor
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.checkpoint import Checkpoint, save_checkpoint
from yolor_cli.engine.model.darknet import build_model


def _raw(rows: list[list[float]]) -> torch.Tensor:
    """(1, n, 5 + 2) decoded rows: cx, cy, w, h, objectness, p(class 0), p(class 1)."""
    return torch.tensor([rows], dtype=torch.float32)


def test_nms_suppresses_overlaps_within_a_class_only() -> None:
    out = non_max_suppression(
        _raw([[50, 50, 20, 20, 0.9, 1, 0], [51, 50, 20, 20, 0.8, 1, 0], [51, 50, 20, 20, 0.7, 0, 1]]),
        conf_threshold=0.1,
        iou_threshold=0.5,
        max_det=300,
    )[0]
    assert out[:, 5].tolist() == [0, 1] and out[:, 4].tolist() == pytest.approx([0.9, 0.7])
    torch.testing.assert_close(out[0, :4], torch.tensor([40.0, 40.0, 60.0, 60.0]))


def test_nms_edge_cases() -> None:
    def nms(raw: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return non_max_suppression(raw, **{"conf_threshold": 0.25, "iou_threshold": 0.45, "max_det": 300, **kwargs})[0]

    empty = nms(_raw([[50, 50, 20, 20, 0.05, 1, 0]]))
    assert empty.shape == (0, 6)
    rows = [[10 * i, 10, 5, 5, 0.9, 0.6, 0.5] for i in range(10)]
    multi = nms(_raw(rows), max_det=7)
    assert len(multi) == 7  # each box kept for both classes, then capped
    single = nms(_raw(rows), multi_label=False)
    assert set(single[:, 5].tolist()) == {0.0} and len(single) == 10
    only_one = nms(_raw(rows), classes=[1])
    assert set(only_one[:, 5].tolist()) == {1.0}
    agnostic = nms(
        _raw([[50, 50, 20, 20, 0.9, 1, 0], [50, 50, 20, 20, 0.9, 0, 0.8]]), conf_threshold=0.1, agnostic=True
    )
    assert len(agnostic) == 1


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("infer") / "voc", images=10, seed=5, val=0.5)


def _tiny(nc: int = 3):
    torch.manual_seed(0)
    return build_model(load_cfg("yolor_csp_tiny"), nc=nc)


class _FixedBox(torch.nn.Module):
    """Stands in for a model: 'detects' one class-1 box at cx, cy, w, h = 120, 80, 80, 80 in input pixels."""

    def forward(self, x: torch.Tensor):
        row = torch.tensor([[120.0, 80.0, 80.0, 80.0, 0.9, 0.1, 0.8]])
        return row.expand(x.shape[0], 1, 7), []


def test_predictor_maps_boxes_back_to_the_original_image() -> None:
    predictor = Predictor(_tiny(nc=2), device=torch.device("cpu"), conf=0.1)
    predictor.model = _FixedBox()
    image = np.zeros((100, 200, 3), dtype=np.uint8)  # letterboxed x1.6 into 160 x 320, no padding
    tensor, geometry = predictor.prepare(image, 320)
    assert tuple(tensor.shape[1:]) == (160, 320) and geometry.pad == (0, 0)
    detections = predictor(tensor[None], [geometry])[0]
    np.testing.assert_allclose(detections.boxes, [[50, 25, 100, 75]])
    assert detections.classes.tolist() == [1] and detections.scores == pytest.approx([0.72])
    padded, geometry = predictor.prepare(np.zeros((50, 200, 3), dtype=np.uint8), 320)  # 80 x 320 -> pad to 96
    assert tuple(padded.shape[1:]) == (96, 320) and geometry.pad == (0, 8)
    np.testing.assert_allclose(predictor(padded[None], [geometry])[0].boxes, [[50, 20, 100, 50]])  # clipped


def test_predictor_leaves_the_callers_model_alone() -> None:
    model = _tiny()
    model.train()
    Predictor(model, device="cpu")
    assert model.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_ground_truth_as_predictions_scores_one(shapes: Path, tmp_path: Path) -> None:
    data = load_data_config(shapes / "data.yaml")
    dataset = build_dataset(data, "val", img_size=64, batch_size=1)
    rows = []
    for record in dataset.records:
        boxes, classes = ground_truth(record)
        for (x1, y1, x2, y2), cls in zip(boxes, classes):
            rows.append(
                {
                    "image_id": record.image.stem,
                    "category_id": int(cls),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": 0.9,
                }
            )
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(rows))
    result = evaluate_predictions(path, data, metric="coco")
    assert result.metrics.map == pytest.approx(1.0) and result.metrics.map50 == pytest.approx(1.0)
    # The official formula tops out at 0.995: its (recall 1, precision 0) end point halves the last step.
    result = evaluate_predictions(path, data, metric="yolor")
    assert result.metrics.map == pytest.approx(0.995) and result.metrics.map50 == pytest.approx(0.995)
    rows[0]["category_id"] = 9
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match="category_id 9"):
        evaluate_predictions(path, data)


def test_model_evaluation_and_predictions_file_agree(shapes: Path, tmp_path: Path) -> None:
    data = load_data_config(shapes / "data.yaml")
    result, results = evaluate_model(_tiny(), data, img_size=128, batch_size=2, conf=0.001, iou=0.6)
    assert result.images == 5 and set(result.speed_ms) == {"preprocess", "inference", "nms"}
    assert all((det.boxes[:, 2] >= det.boxes[:, 0]).all() for _, det in results)
    # Boxes are in the original images' pixels (clipped to them).
    for record, det in results:
        assert (det.boxes[:, [0, 2]] <= record.width + 1e-6).all() and (
            det.boxes[:, [1, 3]] <= record.height + 1e-6
        ).all()
    path = write_predictions(results, tmp_path / "predictions.json")
    rows = json.loads(path.read_text())
    assert {"image_id", "category_id", "bbox", "score"} == set(rows[0])
    rescored = evaluate_predictions(path, data)
    assert rescored.images == result.images
    assert rescored.metrics.map == pytest.approx(result.metrics.map, abs=0.01)


def test_detect_on_images_and_a_short_video(shapes: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for image in sorted((shapes / "images").glob("*.jpg"))[:2]:
        (source / image.name).write_bytes(image.read_bytes())
    writer = cv2.VideoWriter(str(source / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (96, 64))
    for frame in range(4):
        picture = np.full((64, 96, 3), 30, np.uint8)
        cv2.circle(picture, (20 + 10 * frame, 32), 12, (0, 200, 255), -1)
        writer.write(picture)
    writer.release()
    (source / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    predictor = Predictor(_tiny(), device=torch.device("cpu"), conf=0.0001)
    result = run_detect(predictor, str(source), out, img_size=128, names=["a", "b", "c"], save_txt=True, save_conf=True)
    assert (result.images, result.video_frames) == (2, 4)
    assert [u.path.name for u in result.unreadable] == ["broken.png"]
    assert (out / "clip.mp4").stat().st_size > 0
    assert cv2.VideoCapture(str(out / "clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 4
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert labels[:4] == ["clip_frame0.txt", "clip_frame1.txt", "clip_frame2.txt", "clip_frame3.txt"]
    assert len(labels) == 6
    first = (out / "labels" / labels[-1]).read_text().splitlines()[0].split()
    assert len(first) == 6 and all(0 <= float(v) <= 1 for v in first[1:5])
    assert sum(result.detections.values()) > 0 and set(result.detections) <= {"a", "b", "c"}


def test_cli_eval_json_and_detect(shapes: Path, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    model = _tiny()
    save_checkpoint(
        Checkpoint(cfg=model.cfg, model_state=model.state_dict(), names=["circle", "rectangle", "triangle"]),
        tmp_path / "w.pt",
    )
    result = invoke(
        "eval",
        "--weights",
        str(tmp_path / "w.pt"),
        "--data",
        str(shapes / "data.yaml"),
        "--img-size",
        "128",
        "--batch-size",
        "4",
        "--json",
        "--save-json",
        "--plots",
        "--project",
        str(tmp_path / "runs"),
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"precision", "recall", "map50", "map", "per_class", "speed_ms"} <= payload.keys()
    assert set(payload["per_class"][0]) == {"class", "images", "instances", "precision", "recall", "map50", "map"}
    assert set(payload["speed_ms"]) == {"preprocess", "inference", "nms"}
    names = {Path(f).name for f in payload["files"]}
    assert {
        "predictions.json",
        "PR_curve.png",
        "F1_curve.png",
        "P_curve.png",
        "R_curve.png",
        "confusion_matrix.png",
    } <= names
    again = invoke(
        "eval",
        "--data",
        str(shapes / "data.yaml"),
        "--predictions",
        str(tmp_path / "runs" / "exp" / "predictions.json"),
        "--metric",
        "yolor",
        "--json",
    )
    assert again.exit_code == 0 and json.loads(again.stdout)["metric"] == "yolor"

    result = invoke(
        "detect",
        "--source",
        str(shapes / "images" / "*.jpg"),
        "--weights",
        str(tmp_path / "w.pt"),
        "--img-size",
        "128",
        "--project",
        str(tmp_path / "det"),
        "--pruned",
        "--classes",
        "circle,2",
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["images"] == 10 and set(payload["detections"]) <= {"circle", "triangle"}


def test_cli_eval_and_detect_errors(shapes: Path, tmp_path: Path) -> None:
    from tests.test_cli import invoke

    model = _tiny(nc=5)
    save_checkpoint(Checkpoint(cfg=model.cfg, model_state=model.state_dict()), tmp_path / "w5.pt")
    result = invoke("eval", "--weights", str(tmp_path / "w5.pt"), "--data", str(shapes / "data.yaml"))
    assert result.exit_code == 1 and "nc=3 but the model was built for nc=5" in " ".join(result.stderr.split())
    result = invoke(
        "detect",
        "--source",
        str(tmp_path / "nothing"),
        "--weights",
        str(tmp_path / "w5.pt"),
        "--project",
        str(tmp_path / "d"),
    )
    assert result.exit_code == 1 and "source not found" in result.stderr
    result = invoke(
        "detect",
        "--source",
        str(shapes / "images"),
        "--weights",
        str(tmp_path / "w5.pt"),
        "--classes",
        "zebra",
        "--project",
        str(tmp_path / "d"),
    )
    assert result.exit_code == 1 and "neither a class index" in result.stderr
    result = invoke("eval", "--data", str(shapes / "data.yaml"), "--predictions", str(tmp_path / "none.json"))
    assert result.exit_code == 1 and "predictions file not found" in result.stderr
    result = invoke(
        "eval", "--data", str(shapes / "data.yaml"), "--predictions", str(tmp_path / "none.json"), "--save-json"
    )
    assert result.exit_code == 1 and "there is no model" in result.stderr
    result = invoke("eval", "--weights", str(tmp_path / "w5.pt"))
    assert result.exit_code == 2 and "Missing option '--data'" in result.stderr  # a usage error: click's code 2
    result = invoke(
        "detect",
        "--source",
        str(shapes / "images"),
        "--weights",
        str(tmp_path / "w5.pt"),
        "--img-size",
        "100",
        "--project",
        str(tmp_path / "d"),
    )
    assert result.exit_code == 1 and "not a multiple of the model's largest stride 32" in " ".join(
        result.stderr.split()
    )
    (tmp_path / "empty").mkdir()
    result = invoke(
        "detect",
        "--source",
        str(tmp_path / "empty"),
        "--weights",
        str(tmp_path / "w5.pt"),
        "--project",
        str(tmp_path / "d"),
    )
    assert result.exit_code == 1 and "holds no image or video" in result.stderr
    result = invoke("eval", "--weights", str(tmp_path / "w5.pt"), "--data", str(shapes / "data.yaml"), "--device", "0")
    # On a GPU machine the device is fine and the class-count check speaks instead.
    expected = "nc=3 but the model was built for nc=5" if torch.cuda.is_available() else "CUDA is not available"
    assert result.exit_code == 1 and expected in " ".join(result.stderr.split())


def test_inputs_with_the_same_name_do_not_overwrite_each_other(shapes: Path, tmp_path: Path) -> None:
    images = sorted((shapes / "images").glob("*.jpg"))[:2]
    for folder, image in zip(("a", "b"), images):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.jpg").write_bytes(image.read_bytes())
    listing = tmp_path / "list.txt"
    listing.write_text("a/same.jpg\nb/same.jpg\n")
    out = tmp_path / "out"
    result = run_detect(Predictor(_tiny(), device="cpu"), str(listing), out, img_size=64, names=None, save_txt=True)
    assert result.images == 2
    assert sorted(p.name for p in out.glob("*.jpg")) == ["same.jpg", "same_2.jpg"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["same.txt", "same_2.txt"]


def test_an_ir_without_its_bin_names_the_missing_file(tmp_path: Path) -> None:
    """OpenVINO's own text for a missing .bin is "Exception from core.cpp:84"; the file is named instead."""
    pytest.importorskip("openvino")
    from yolor_cli.engine.errors import YolorError
    from yolor_cli.engine.infer.exported import load_exported

    folder = tmp_path / "model_openvino_model"
    folder.mkdir()
    (folder / "model.xml").write_text('<?xml version="1.0"?>\n<net name="m" version="11"><layers/></net>\n')
    with pytest.raises(YolorError) as caught:
        load_exported(folder, torch.device("cpu"))
    assert (
        caught.value.message
        == f"{folder / 'model.xml'} has no weights file beside it: {folder / 'model.bin'} is missing"
    )
    assert "core.cpp" not in str(caught.value)
