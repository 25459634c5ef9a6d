"""Image augmentations that move boxes exactly as they move pixels.

Labels here are ``(n, 5)`` float arrays ``[class, x1, y1, x2, y2]`` in pixels of the image they
come with. Randomness comes from the ``rng`` passed in (a ``numpy.random.Generator``), so a seeded
loader gives the same batches every run.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from yolor_cli.engine.boxes import Letterbox, letterbox_geometry

PAD_VALUE = 114  # grey used for padding and empty mosaic areas, as YOLOR does
# A box survives a geometric augmentation only if it keeps some size, area and sane shape.
MIN_BOX_SIDE = 2.0  # pixels
MIN_AREA_KEPT = 0.1  # of its (scaled) area before the transform
MAX_ASPECT = 20.0


def letterbox(
    image: np.ndarray, target: tuple[int, int], *, scale_up: bool = True, minimal_pad_stride: int | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and pad with grey to ``target`` (h, w)."""
    geometry = letterbox_geometry(image.shape[:2], target, scale_up=scale_up, minimal_pad_stride=minimal_pad_stride)
    if image.shape[:2] != geometry.resized:
        image = cv2.resize(image, geometry.resized[::-1], interpolation=cv2.INTER_LINEAR)
    left, top = geometry.pad
    right = geometry.target[1] - geometry.resized[1] - left
    bottom = geometry.target[0] - geometry.resized[0] - top
    if left or top or right or bottom:
        image = cv2.copyMakeBorder(
            image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE)
        )
    return image, geometry


def augment_hsv(image: np.ndarray, rng: np.random.Generator, hue: float, saturation: float, value: float) -> np.ndarray:
    """Random gains on hue, saturation and value through lookup tables (fast on uint8)."""
    if not (hue or saturation or value):
        return image
    gains = rng.uniform(-1, 1, 3) * [hue, saturation, value] + 1
    h, s, v = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.int16)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    merged = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    return cv2.cvtColor(merged, cv2.COLOR_HSV2BGR)


def box_candidates(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Which transformed boxes to keep; both arrays are (n, 4) xyxy, ``before`` already scaled."""
    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    big_enough = (w2 > MIN_BOX_SIDE) & (h2 > MIN_BOX_SIDE) & (w2 * h2 / (w1 * h1 + 1e-16) > MIN_AREA_KEPT)
    return big_enough & (aspect < MAX_ASPECT)


def random_perspective(
    image: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    degrees: float = 0.0,
    translate: float = 0.1,
    scale: float = 0.5,
    shear: float = 0.0,
    perspective: float = 0.0,
    border: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray]:
    """Rotation, scale, shear, translation and perspective in one warp (YOLOR's order of operations).

    ``border`` (negative for a mosaic) crops the output: a 2s x 2s mosaic with border -s/2 gives s x s.
    """
    height = image.shape[0] + border[0] * 2
    width = image.shape[1] + border[1] * 2
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -image.shape[1] / 2, -image.shape[0] / 2
    persp = np.eye(3)
    persp[2, 0], persp[2, 1] = rng.uniform(-perspective, perspective, 2)
    rotate = np.eye(3)
    gain = rng.uniform(1 - scale, 1 + scale)
    rotate[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=rng.uniform(-degrees, degrees), scale=gain)
    shear_m = np.eye(3)
    shear_m[0, 1], shear_m[1, 0] = (math.tan(a * math.pi / 180) for a in rng.uniform(-shear, shear, 2))
    move = np.eye(3)
    move[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * width
    move[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * height
    matrix = move @ shear_m @ rotate @ persp @ centre  # applied right to left

    if border != (0, 0) or (matrix != np.eye(3)).any():
        grey = (PAD_VALUE, PAD_VALUE, PAD_VALUE)
        if perspective:
            image = cv2.warpPerspective(image, matrix, dsize=(width, height), borderValue=grey)
        else:
            image = cv2.warpAffine(image, matrix[:2], dsize=(width, height), borderValue=grey)

    if len(labels):
        count = len(labels)
        corners = np.ones((count * 4, 3))
        corners[:, :2] = labels[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(count * 4, 2)  # x1y1 x2y2 x1y2 x2y1
        corners = corners @ matrix.T
        corners = corners[:, :2] / corners[:, 2:3] if perspective else corners[:, :2]
        corners = corners.reshape(count, 8)
        xs, ys = corners[:, [0, 2, 4, 6]], corners[:, [1, 3, 5, 7]]
        boxes = np.stack((xs.min(1), ys.min(1), xs.max(1), ys.max(1)), 1)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        keep = box_candidates(labels[:, 1:5] * gain, boxes)
        labels = labels[keep].copy()
        labels[:, 1:5] = boxes[keep]
    return image, labels


def mixup(
    image: np.ndarray, labels: np.ndarray, other: np.ndarray, other_labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Blend two images of the same size (ratio from Beta(8, 8)) and keep both sets of boxes."""
    ratio = rng.beta(8.0, 8.0)
    blended = (image.astype(np.float32) * ratio + other.astype(np.float32) * (1 - ratio)).astype(np.uint8)
    return blended, np.concatenate((labels, other_labels), 0)


def flip_lr(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    width = image.shape[1]
    labels = labels.copy()
    labels[:, [1, 3]] = width - labels[:, [3, 1]]
    return image[:, ::-1], labels  # a view: the final CHW conversion makes the one copy


def flip_ud(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height = image.shape[0]
    labels = labels.copy()
    labels[:, [2, 4]] = height - labels[:, [4, 2]]
    return image[::-1], labels


def mosaic_canvas(
    images: list[np.ndarray], labels: list[np.ndarray], size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Four images around a random centre on a 2s x 2s grey canvas; boxes shifted and clipped."""
    canvas = np.full((size * 2, size * 2, 3), PAD_VALUE, dtype=np.uint8)
    yc, xc = (int(v) for v in rng.uniform(size // 2, size * 2 - size // 2, 2))
    placed = []
    for position, (image, boxes) in enumerate(zip(images, labels)):
        h, w = image.shape[:2]
        if position == 0:  # top left
            xa1, ya1, xa2, ya2 = max(xc - w, 0), max(yc - h, 0), xc, yc
            xb1, yb1, xb2, yb2 = w - (xa2 - xa1), h - (ya2 - ya1), w, h
        elif position == 1:  # top right
            xa1, ya1, xa2, ya2 = xc, max(yc - h, 0), min(xc + w, size * 2), yc
            xb1, yb1, xb2, yb2 = 0, h - (ya2 - ya1), min(w, xa2 - xa1), h
        elif position == 2:  # bottom left
            xa1, ya1, xa2, ya2 = max(xc - w, 0), yc, xc, min(size * 2, yc + h)
            xb1, yb1, xb2, yb2 = w - (xa2 - xa1), 0, w, min(ya2 - ya1, h)
        else:  # bottom right
            xa1, ya1, xa2, ya2 = xc, yc, min(xc + w, size * 2), min(size * 2, yc + h)
            xb1, yb1, xb2, yb2 = 0, 0, min(w, xa2 - xa1), min(ya2 - ya1, h)
        canvas[ya1:ya2, xa1:xa2] = image[yb1:yb2, xb1:xb2]
        shifted = boxes.copy()
        shifted[:, [1, 3]] += xa1 - xb1
        shifted[:, [2, 4]] += ya1 - yb1
        placed.append(shifted)
    merged = np.concatenate(placed, 0) if placed else np.zeros((0, 5))
    merged[:, 1:] = merged[:, 1:].clip(0, 2 * size)
    return canvas, merged
