"""`yolor eval --errors` against tidecv (the TIDE reference implementation), and what it costs.

Writes one set of detections and its ground truth as COCO JSON, runs our breakdown in this process
and tidecv in a scratch venv (a subprocess: tidecv is a test oracle, never a dependency), and prints
the six dAPs of both, at IoU 0.5 (mAP50) and averaged over 0.50:0.95 (mAP50-95, tidecv run once per
threshold with ``pos_threshold=t``), with the largest difference. Then times eval with and without
the breakdown, alternating.

    python3 -m venv /tmp/oracle && /tmp/oracle/bin/pip install tidecv
    python benchmarks/errors_oracle.py --quick                      # generated detections, seconds
    python benchmarks/errors_oracle.py --weights runs/train/exp/weights/best.pt   # the demo val split
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from yolor_cli.engine.evaluate.errors import ERROR_TYPES, error_breakdown
from yolor_cli.engine.evaluate.metrics import IOU_THRESHOLDS, ImageDetections

TIDE_NAMES = {"cls": "Cls", "loc": "Loc", "both": "Both", "dupe": "Dupe", "bkg": "Bkg", "missed": "Miss"}
TIDE_SCRIPT = """
import json, sys
from tidecv import TIDE, datasets
gt = datasets.COCO(sys.argv[1])
preds = datasets.COCOResult(sys.argv[2])
out = {}
for t in json.loads(sys.argv[3]):
    tide = TIDE(pos_threshold=t, background_threshold=0.1)
    tide.evaluate(gt, preds, mode=TIDE.BOX, name="run")
    out[str(t)] = {"errors": tide.get_main_errors()["run"], "ap": tide.runs["run"].ap}
print(json.dumps(out))
"""


def generated(images: int, seed: int = 0) -> list[ImageDetections]:
    """Objects and noisy detections around them: near misses, wrong classes, duplicates, clutter."""
    rng = np.random.default_rng(seed)
    result = []
    for _ in range(images):
        m = int(rng.integers(0, 8))
        xy = rng.uniform(0, 500, (m, 2))
        gt = np.concatenate([xy, xy + rng.uniform(10, 150, (m, 2))], 1)
        gt_cls = rng.integers(0, 4, m)
        n = int(rng.integers(0, 30))
        source = rng.integers(0, max(m, 1), n)
        if m:
            boxes = gt[source] + rng.normal(0, 1, (n, 1)) * rng.uniform(0, 25, (n, 4))
            cls = np.where(rng.random(n) < 0.8, gt_cls[source], rng.integers(0, 4, n))
        else:
            boxes, cls = np.zeros((n, 4)), rng.integers(0, 4, n)
        clutter = rng.random(n) < 0.2
        boxes[clutter, :2] = rng.uniform(0, 500, (int(clutter.sum()), 2))
        boxes[clutter, 2:] = boxes[clutter, :2] + rng.uniform(5, 80, (int(clutter.sum()), 2))
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        result.append(ImageDetections(boxes, rng.random(n).round(4), cls, gt, gt_cls))
    return result


def demo_images(weights: Path, img_size: int) -> tuple[list[ImageDetections], float, float]:
    """Detections of ``weights`` on the demo val split, and eval's time without and with --errors."""
    from yolor_cli.engine.evaluate.evaluator import run_eval
    from yolor_cli.engine.evaluate.request import EvalRequest
    from yolor_cli.engine.reporting import SilentReporter
    from yolor_cli.engine.train.build import demo_data

    data = demo_data(SilentReporter())
    timings: dict[bool, list[float]] = {False: [], True: []}
    result = None
    for _ in range(3):
        for errors in (False, True):  # alternating, so drift hits both alike
            with tempfile.TemporaryDirectory() as project:
                request = EvalRequest(
                    data=data, weights=weights, img_size=img_size, errors=errors, project=Path(project), half=False
                )
                start = time.perf_counter()
                result = run_eval(request)
                timings[errors].append(time.perf_counter() - start)
    assert result is not None
    return result.detections, float(np.median(timings[False])), float(np.median(timings[True]))


def write_coco(images: list[ImageDetections], folder: Path) -> tuple[Path, Path]:
    gt = {"images": [], "annotations": [], "categories": []}
    classes: set[int] = set()
    detections = []
    for index, image in enumerate(images):
        gt["images"].append({"id": index, "file_name": f"{index}.jpg", "width": 10000, "height": 10000})
        for (x1, y1, x2, y2), cls in zip(image.gt_boxes.tolist(), image.gt_classes.tolist()):
            classes.add(int(cls))
            polygon = [[x1, y1, x2, y1, x2, y2, x1, y2]]
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": index,
                    "category_id": int(cls),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                    "segmentation": polygon,
                }
            )
        for (x1, y1, x2, y2), score, cls in zip(image.boxes.tolist(), image.scores.tolist(), image.classes.tolist()):
            detections.append(
                {"image_id": index, "category_id": int(cls), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            )
    gt["categories"] = [{"id": c, "name": str(c)} for c in sorted(classes)]
    gt_path, det_path = folder / "gt.json", folder / "detections.json"
    gt_path.write_text(json.dumps(gt))
    det_path.write_text(json.dumps(detections))
    return gt_path, det_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="generated detections instead of a model")
    parser.add_argument("--weights", type=Path, help="a checkpoint trained on the demo data")
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--images", type=int, default=200, help="--quick: how many generated images")
    parser.add_argument("--oracle-python", default="/tmp/oracle/bin/python", help="a python with tidecv")
    args = parser.parse_args()
    if not args.quick and args.weights is None:
        parser.error("pass --quick or --weights")
    timing = None
    if args.quick:
        images = generated(args.images)
    else:
        images, plain, with_errors = demo_images(args.weights, args.img_size)
        timing = (plain, with_errors)
    nc = 1 + max([int(c) for i in images for c in i.gt_classes] + [int(c) for i in images for c in i.classes] + [0])
    start = time.perf_counter()
    ours = error_breakdown(images, nc).overall
    ours_s = time.perf_counter() - start
    thresholds = [round(float(t), 2) for t in IOU_THRESHOLDS]
    with tempfile.TemporaryDirectory() as folder:
        gt_path, det_path = write_coco(images, Path(folder))
        done = subprocess.run(
            [args.oracle_python, "-c", TIDE_SCRIPT, str(gt_path), str(det_path), json.dumps(thresholds)],
            capture_output=True,
            text=True,
            check=True,
        )
    tide = json.loads(done.stdout.strip().splitlines()[-1])
    rows = []
    worst = 0.0
    for kind in ERROR_TYPES:
        tide50 = tide[str(thresholds[0])]["errors"][TIDE_NAMES[kind]] / 100
        tide_map = float(np.mean([tide[str(t)]["errors"][TIDE_NAMES[kind]] for t in thresholds])) / 100
        worst = max(worst, abs(tide50 - ours.map50[kind]), abs(tide_map - ours.map[kind]))
        rows.append((kind, ours.map50[kind], tide50, ours.map[kind], tide_map))
    base50 = tide[str(thresholds[0])]["ap"] / 100
    base = float(np.mean([tide[str(t)]["ap"] for t in thresholds])) / 100
    print(f"{len(images)} images, {sum(len(i.scores) for i in images)} detections, {nc} classes")
    print(f"{'type':8} {'ours dAP50':>11} {'tidecv':>8} {'ours dAP':>9} {'tidecv':>8}")
    for kind, a, b, c, d in rows:
        print(f"{kind:8} {a:11.4f} {b:8.4f} {c:9.4f} {d:8.4f}")
    print(f"{'base':8} {ours.base_map50:11.4f} {base50:8.4f} {ours.base_map:9.4f} {base:8.4f}")
    print(f"max |difference| of the six dAPs: {worst:.5f}; breakdown alone: {ours_s * 1000:.0f} ms")
    if timing is not None:
        plain, with_errors = timing
        print(
            f"eval: {plain:.2f} s, eval --errors: {with_errors:.2f} s "
            f"(+{100 * (with_errors - plain) / plain:.1f} %, medians of 3, alternating)"
        )
    sys.exit(0 if worst <= 0.005 else 1)


if __name__ == "__main__":
    main()
