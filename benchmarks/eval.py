"""Metric speed and agreement: our native COCO mAP vs pycocotools (and faster-coco-eval when
installed) on generated detections, plus detection throughput of fused yolor_csp on this CPU.
Prints a table and writes JSON.

    python benchmarks/eval.py [--images 5000] [--dets 100] [--classes 20] [--detect-images 10]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from yolor_cli.engine.evaluate.metrics import ImageDetections, coco_metrics

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "eval.json"


def generate(images: int, dets: int, nc: int, seed: int = 0) -> list[ImageDetections]:
    """Ground truth and noisy detections around it (a realistic mix of hits, near misses and clutter)."""
    rng = np.random.default_rng(seed)
    result = []
    for _ in range(images):
        m = int(rng.integers(1, 15))
        xy = rng.uniform(0, 600, (m, 2))
        gt = np.concatenate([xy, xy + rng.uniform(8, 200, (m, 2))], 1)
        gt_cls = rng.integers(0, nc, m)
        source = rng.integers(0, m, dets)
        boxes = gt[source] + rng.normal(0, 10, (dets, 4))
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        cls = np.where(rng.random(dets) < 0.7, gt_cls[source], rng.integers(0, nc, dets))
        result.append(ImageDetections(boxes, rng.random(dets), cls, gt, gt_cls))
    return result


def to_coco(images: list[ImageDetections], nc: int) -> tuple[dict, list[dict]]:
    gt = {
        "images": [{"id": i, "width": 1000, "height": 1000} for i in range(len(images))],
        "categories": [{"id": c} for c in range(nc)],
        "annotations": [],
    }
    dets = []
    for index, image in enumerate(images):
        for box, cls in zip(image.gt_boxes.tolist(), image.gt_classes.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": index,
                    "category_id": cls,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for box, score, cls in zip(image.boxes.tolist(), image.scores.tolist(), image.classes.tolist()):
            dets.append(
                {
                    "image_id": index,
                    "category_id": cls,
                    "score": score,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                }
            )
    return gt, dets


def run_cocoeval(module: str, gt: dict, dets: list[dict]) -> tuple[float, float, float]:
    """(mAP, mAP50, seconds) with pycocotools' API (faster-coco-eval offers the same one)."""
    coco_module = (
        importlib.import_module(f"{module}.coco") if module == "pycocotools" else importlib.import_module(module)
    )
    COCO = coco_module.COCO
    COCOeval = (
        importlib.import_module("pycocotools.cocoeval").COCOeval
        if module == "pycocotools"
        else coco_module.COCOeval_faster
    )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        start = time.perf_counter()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        seconds = time.perf_counter() - start
    return float(evaluator.stats[0]), float(evaluator.stats[1]), seconds


def detect_throughput(count: int, img_size: int) -> float:
    from yolor_cli.engine.infer.predictor import Predictor
    from yolor_cli.engine.model.bundled import load_cfg
    from yolor_cli.engine.model.darknet import build_model

    predictor = Predictor(build_model(load_cfg("yolor_csp")), device="cpu", conf=0.25, iou=0.45)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(count + 1)]
    tensor, geometry = predictor.prepare(frames[0], img_size)
    predictor(tensor[None], [geometry])  # warm-up
    start = time.perf_counter()
    for frame in frames[1:]:
        tensor, geometry = predictor.prepare(frame, img_size)
        predictor(tensor[None], [geometry])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets", type=int, default=100)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--detect-images", type=int, default=10)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(2)

    images = generate(args.images, args.dets, args.classes)
    start = time.perf_counter()
    ours = coco_metrics(images, args.classes)
    rows = [
        {
            "implementation": "yolor-cli (native)",
            "map": ours.map,
            "map50": ours.map50,
            "seconds": time.perf_counter() - start,
        }
    ]
    gt, dets = to_coco(images, args.classes)
    for module in ("pycocotools", "faster_coco_eval"):
        if importlib.util.find_spec(module) is None:
            print(f"{module} is not installed; skipped", file=sys.stderr)
            continue
        mean_ap, ap50, seconds = run_cocoeval(module, gt, dets)
        rows.append({"implementation": module, "map": mean_ap, "map50": ap50, "seconds": seconds})
    for row in rows:
        row["speedup_of_ours"] = row["seconds"] and rows[0]["seconds"] and row["seconds"] / rows[0]["seconds"]
        print(json.dumps(row), file=sys.stderr)
    throughput = detect_throughput(args.detect_images, 640) if args.detect_images else None

    table = Table(title=f"COCO mAP on {args.images} images x {args.dets} detections, {args.classes} classes")
    for column in ("implementation", "map", "map50", "seconds", "ours x faster"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    for row in rows:
        table.add_row(
            row["implementation"],
            f"{row['map']:.6f}",
            f"{row['map50']:.6f}",
            f"{row['seconds']:.2f}",
            f"{row['speedup_of_ours']:.1f}",
        )
    console = Console()
    console.print(table)
    if throughput is not None:
        console.print(f"detect: yolor_csp fused, 640 px, batch 1, 2 threads: {throughput:.2f} images/s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "eval",
                "images": args.images,
                "dets": args.dets,
                "classes": args.classes,
                "rows": rows,
                "detect_images_per_s": throughput,
                "machine": platform.machine(),
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
