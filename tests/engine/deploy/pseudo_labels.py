"""Val labels made from a model's own detections, for tests of accuracy checks.

A tiny model with formula weights scores mAP 0 on real labels, so every comparison of two of its
files would compare 0 with 0. With its own best boxes as the labels, the fp32 file scores near 1, and
any other file scores what it keeps of the fp32 behaviour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from yolor_cli.engine.boxes import xyxy_to_xywhn
from yolor_cli.engine.config import load_data_config
from yolor_cli.engine.data.labels import label_path_for
from yolor_cli.engine.data.loader import build_dataset
from yolor_cli.engine.infer.onnx_model import OnnxDetector
from yolor_cli.engine.infer.predictor import Predictor

PSEUDO_BOXES = 3  # fp32 detections per val image that become its labels


def write_pseudo_labels(data_yaml: Path, fp32_onnx: Path, img_size: int) -> None:
    """Each val image's labels := the fp32 file's best boxes on it, found as the evaluation of a
    fixed-size file finds them (square letterbox at the file's size)."""
    data = load_data_config(data_yaml)
    dataset = build_dataset(data, "val", img_size=img_size, batch_size=1)
    predictor = Predictor(OnnxDetector.load(fp32_onnx, torch.device("cpu")), conf=0.0, iou=0.45)
    for index, record in enumerate(dataset.records):
        sample = dataset[index]
        detections = predictor(sample.image[None], [sample.geometry])[0]
        best = np.argsort(-detections.scores)[:PSEUDO_BOXES]
        boxes = detections.boxes[best].copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, record.width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, record.height)
        rows = xyxy_to_xywhn(boxes, record.width, record.height)
        lines = [
            f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"
            for (cx, cy, w, h), cls in zip(rows, detections.classes[best])
            if w > 0 and h > 0
        ]
        label_path_for(record.image).write_text("".join(f"{line}\n" for line in lines))
