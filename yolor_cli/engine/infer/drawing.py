"""Boxes drawn on images with OpenCV (no matplotlib needed): detections, and training batches
laid out as one mosaic so a user can check that labels sit on the objects they name."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from yolor_cli.engine.boxes import xywh_to_xyxy

LINE_WIDTH = 2
FONT = cv2.FONT_HERSHEY_SIMPLEX
# A fixed palette so a class keeps its colour across images and runs (BGR).
PALETTE = [
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
    (147, 69, 52),
    (255, 115, 100),
    (236, 24, 0),
    (255, 56, 132),
    (133, 0, 82),
    (255, 56, 203),
]
BATCH_MOSAIC_IMAGES = 16
BATCH_MOSAIC_SIDE = 1280  # pixels, the longer side of the whole mosaic


def class_name(names: list[str] | None, cls: int) -> str:
    return names[cls] if names and 0 <= cls < len(names) else str(cls)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    names: list[str] | None,
    scores: np.ndarray | None = None,
    line_width: int = LINE_WIDTH,
    font_scale: float = 0.5,
) -> np.ndarray:
    """A copy of the BGR ``image`` with xyxy pixel ``boxes`` and their labels (and scores, if given)."""
    out = image.copy()
    for index, ((x1, y1, x2, y2), cls) in enumerate(zip(boxes, classes)):
        colour = PALETTE[int(cls) % len(PALETTE)]
        top_left, bottom_right = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(out, top_left, bottom_right, colour, line_width, cv2.LINE_AA)
        label = class_name(names, int(cls)) + (f" {scores[index]:.2f}" if scores is not None else "")
        (width, height), _ = cv2.getTextSize(label, FONT, font_scale, 1)
        y_text = max(top_left[1], height + 4)
        cv2.rectangle(out, (top_left[0], y_text - height - 4), (top_left[0] + width + 2, y_text), colour, -1)
        cv2.putText(out, label, (top_left[0] + 1, y_text - 3), FONT, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def batch_mosaic(images: torch.Tensor, targets: torch.Tensor, names: list[str] | None) -> np.ndarray:
    """Up to 16 images of a (B, 3, H, W) RGB uint8 batch on a grid, each with its targets drawn.

    ``targets`` are the collated (n, 6) rows [image index, class, cx, cy, w, h], normalised.
    """
    count = min(len(images), BATCH_MOSAIC_IMAGES)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    height, width = images.shape[2:]
    scale = min(1.0, BATCH_MOSAIC_SIDE / (max(rows * height, columns * width)))
    tile_h, tile_w = max(1, int(height * scale)), max(1, int(width * scale))
    canvas = np.full((rows * tile_h, columns * tile_w, 3), 255, dtype=np.uint8)
    rows_of = targets.cpu().numpy()
    for index in range(count):
        tile = np.ascontiguousarray(images[index].cpu().numpy().transpose(1, 2, 0)[:, :, ::-1])
        if scale != 1.0:
            tile = cv2.resize(tile, (tile_w, tile_h), interpolation=cv2.INTER_AREA)
        mine = rows_of[rows_of[:, 0] == index]
        boxes = xywh_to_xyxy(mine[:, 2:6] * [tile_w, tile_h, tile_w, tile_h]) if len(mine) else np.zeros((0, 4))
        tile = draw_boxes(tile, boxes, mine[:, 1], names, line_width=1, font_scale=0.4)
        cv2.rectangle(tile, (0, 0), (tile_w - 1, tile_h - 1), (255, 255, 255), 2)
        top, left = (index // columns) * tile_h, (index % columns) * tile_w
        canvas[top : top + tile_h, left : left + tile_w] = tile
    return canvas
