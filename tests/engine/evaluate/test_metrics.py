"""Metrics: equal to pycocotools on edge cases and random data; the YOLOR formula as test.py."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from yolor_cli.engine.evaluate.metrics import ImageDetections, coco_metrics, confusion_matrix, yolor_metrics


def _pycocotools(images: list[ImageDetections], nc: int) -> tuple[float, float]:
    """The reference numbers; tests that need them skip when the coco extra is not installed."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {
        "images": [{"id": i, "width": 1000, "height": 1000} for i in range(len(images))],
        "categories": [{"id": c} for c in range(nc)],
        "annotations": [],
    }
    dets = []
    for index, image in enumerate(images):
        for box, cls in zip(image.gt_boxes, image.gt_classes):
            w, h = box[2] - box[0], box[3] - box[1]
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": index,
                    "category_id": int(cls),
                    "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
        for box, score, cls in zip(image.boxes, image.scores, image.classes):
            dets.append(
                {
                    "image_id": index,
                    "category_id": int(cls),
                    "score": float(score),
                    "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if not dets:
            return 0.0, 0.0
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return max(evaluator.stats[0], 0.0), max(evaluator.stats[1], 0.0)


def _image(
    gt: list[list[float]], gt_cls: list[int], det: list[list[float]], scores: list[float], cls: list[int]
) -> ImageDetections:
    return ImageDetections(
        np.array(det, dtype=float).reshape(-1, 4),
        np.array(scores, dtype=float),
        np.array(cls, dtype=int),
        np.array(gt, dtype=float).reshape(-1, 4),
        np.array(gt_cls, dtype=int),
    )


BOX_A, BOX_B, BOX_C = [10, 10, 60, 80], [100, 100, 180, 150], [300, 40, 302, 43]

CASES = {
    "perfect": [_image([BOX_A, BOX_B], [0, 1], [BOX_A, BOX_B], [0.9, 0.8], [0, 1])],
    "no_detections": [_image([BOX_A], [0], [], [], [])],
    "duplicates": [_image([BOX_A], [0], [BOX_A, BOX_A, [12, 12, 60, 80]], [0.9, 0.85, 0.8], [0, 0, 0])],
    "wrong_class": [_image([BOX_A, BOX_B], [0, 1], [BOX_A, BOX_B], [0.9, 0.8], [1, 0])],
    "tiny_boxes": [_image([BOX_C], [1], [[300, 40, 302, 42.5], BOX_C], [0.7, 0.6], [1, 1])],
    "image_without_labels": [
        _image([BOX_A], [0], [BOX_A], [0.9], [0]),
        _image([], [], [BOX_B, [5, 5, 40, 40]], [0.95, 0.3], [0, 1]),
    ],
    "shifted": [_image([BOX_A, BOX_B], [0, 0], [[15, 14, 62, 85], [110, 95, 185, 150]], [0.6, 0.9], [0, 0])],
}


@pytest.mark.parametrize("name", list(CASES))
def test_coco_edge_cases_equal_pycocotools(name: str) -> None:
    images = CASES[name]
    ours = coco_metrics(images, nc=2)
    reference_map, reference_map50 = _pycocotools(images, nc=2)
    assert ours.map == pytest.approx(reference_map, abs=1e-9)
    assert ours.map50 == pytest.approx(reference_map50, abs=1e-9)


def _random_images(seed: int, count: int, nc: int) -> list[ImageDetections]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        m = int(rng.integers(0, 8))
        xy = rng.uniform(0, 600, (m, 2))
        gt = np.concatenate([xy, xy + rng.uniform(4, 150, (m, 2))], 1)
        gt_cls = rng.integers(0, nc, m)
        n = int(rng.integers(0, 130))  # more than 100 per image: COCO's cap applies per image and class
        if m:
            source = rng.integers(0, m, n)
            boxes = gt[source] + rng.normal(0, 6, (n, 4))
            cls = np.where(rng.random(n) < 0.8, gt_cls[source], rng.integers(0, nc, n))
        else:
            xy = rng.uniform(0, 600, (n, 2))
            boxes = np.concatenate([xy, xy + rng.uniform(4, 80, (n, 2))], 1)
            cls = rng.integers(0, nc, n)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        scores = np.round(rng.random(n), 2)  # many ties, to exercise the ordering rules
        images.append(ImageDetections(boxes, scores, cls, gt, gt_cls))
    return images


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_detections_equal_pycocotools(seed: int) -> None:
    images = _random_images(seed, 60, nc=4)
    ours = coco_metrics(images, nc=4)
    reference_map, reference_map50 = _pycocotools(images, nc=4)
    assert abs(ours.map - reference_map) < 0.002 and abs(ours.map50 - reference_map50) < 0.002


def test_perfect_detections_score_one_and_p_r_f1_are_consistent() -> None:
    metrics = coco_metrics(CASES["perfect"], nc=2)
    assert [metrics.map, metrics.map50, metrics.precision, metrics.recall] == pytest.approx([1.0, 1.0, 1.0, 1.0])
    per_class = {c.cls: c for c in metrics.per_class}
    assert per_class[0].instances == 1 and per_class[0].images == 1


def test_classes_without_ground_truth_are_left_out() -> None:
    images = [_image([BOX_A], [0], [BOX_A, BOX_B], [0.9, 0.9], [0, 2])]
    metrics = coco_metrics(images, nc=3)
    assert metrics.map == pytest.approx(1.0)
    assert metrics.per_class[2].map is None and metrics.per_class[1].instances == 0


def test_yolor_formula_matches_test_py_by_hand() -> None:
    """One class, two objects; detections: hit (0.9), miss (0.8), hit (0.7). test.py gives
    recall [0.5, 0.5, 1], precision [1, 0.5, 0.667]; envelope with sentinels (0, 1) and (1, 0);
    AP = trapezoid of np.interp at 101 points."""
    images = [_image([BOX_A, BOX_B], [0, 0], [BOX_A, [400, 400, 450, 450], BOX_B], [0.9, 0.8, 0.7], [0, 0, 0])]
    recall = np.array([0.0, 0.5, 0.5, 1.0, 1.0])
    precision = np.maximum.accumulate(np.array([1.0, 1.0, 0.5, 2 / 3, 0.0])[::-1])[::-1]
    x = np.linspace(0, 1, 101)
    y = np.interp(x, recall, precision)
    expected = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
    metrics = yolor_metrics(images, nc=1)
    assert metrics.map50 == pytest.approx(expected) and metrics.map == pytest.approx(expected)


def test_yolor_formula_reads_higher_than_coco_with_the_same_matches() -> None:
    """Separate objects, at most one detection each, false positives far away: both formulas match
    identically, so the gap is the interpolation (the line to (recall 1, precision 0))."""
    rng = np.random.default_rng(4)
    images = []
    for _ in range(40):
        gt = np.array([[x, y, x + 60, y + 60] for x in (0, 100, 200) for y in (0, 100)], dtype=float)
        found = rng.random(len(gt)) < 0.7
        boxes = gt[found] + rng.normal(0, 4, (found.sum(), 4))
        false = rng.uniform(500, 900, (3, 2))
        boxes = np.concatenate([boxes, np.concatenate([false, false + 50], 1)])
        images.append(
            ImageDetections(boxes, rng.random(len(boxes)), np.zeros(len(boxes), int), gt, np.zeros(len(gt), int))
        )
    coco, yolor = coco_metrics(images, nc=1), yolor_metrics(images, nc=1)
    assert coco.map == pytest.approx(_pycocotools(images, nc=1)[0], abs=1e-9)
    assert yolor.map > coco.map + 0.02


def test_confusion_matrix_counts_hits_confusions_and_background() -> None:
    images = [_image([BOX_A, BOX_B], [0, 1], [BOX_A, BOX_B, [500, 500, 540, 540]], [0.9, 0.9, 0.9], [0, 0, 1])]
    matrix = confusion_matrix(images, nc=2)
    assert matrix[0, 0] == 1 and matrix[0, 1] == 1  # BOX_B (class 1) predicted as 0
    assert matrix[1, 2] == 1  # a detection with no object
    assert matrix.sum() == 3


def test_images_without_any_ground_truth_score_zero_in_both_formulas() -> None:
    """Detections on background-only images: nothing to match, every class left out, mAP 0."""
    images = [_image([], [], [BOX_A, BOX_B], [0.9, 0.8], [0, 1]), _image([], [], [], [], [])]
    for metrics in (coco_metrics(images, nc=2), yolor_metrics(images, nc=2)):
        assert (metrics.map, metrics.map50, metrics.precision, metrics.recall) == (0.0, 0.0, 0.0, 0.0)
        assert [c.instances for c in metrics.per_class] == [0, 0] and metrics.per_class[0].map is None
    assert confusion_matrix(images, nc=2)[:2, 2].tolist() == [1, 1]  # both detections are false positives
