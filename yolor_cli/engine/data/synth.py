"""A generated VOC dataset of simple shapes: the built-in demo data and the tests' data.

Shapes (circle, rectangle, triangle) of varied colours and sizes, with overlaps, on solid,
gradient, noise or striped backgrounds; a few images have no object at all. It needs no download,
is deterministic for a seed, and a small detector learns it in minutes on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from lxml import etree

from yolor_cli.engine.data.images import write_image
from yolor_cli.engine.errors import DataError
from yolor_cli.engine.reporting import Reporter, SilentReporter

SYNTH_CLASSES = ("circle", "rectangle", "triangle")
IMAGE_SIDE_RANGE = (256, 480)  # pixels, drawn per side, so aspect ratios vary
OBJECTS_RANGE = (1, 6)
BACKGROUND_ONLY_SHARE = 0.05
OBJECT_SIZE_RANGE = (0.10, 0.45)  # of the shorter image side
MAX_COVERED_SHARE = 0.25  # later shapes may cover part of earlier ones, never most of them
PLACEMENT_TRIES = 20


@dataclass(frozen=True)
class SynthResult:
    root: Path
    images: int
    objects: dict[str, int]
    background_images: int


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    kind = rng.integers(4)
    base = rng.integers(0, 256, 3)
    if kind == 0:  # solid
        return np.broadcast_to(base.astype(np.uint8), (height, width, 3)).copy()
    if kind == 1:  # linear gradient between two colours
        other = rng.integers(0, 256, 3)
        horizontal = rng.random() < 0.5
        t = np.linspace(0, 1, width if horizontal else height)[:, None]
        ramp = (base * (1 - t) + other * t).astype(np.uint8)  # (n, 3)
        return np.broadcast_to(ramp[None] if horizontal else ramp[:, None], (height, width, 3)).copy()
    if kind == 2:  # noise around a colour
        noise = rng.normal(0, 30, (height, width, 3))
        return np.clip(base + noise, 0, 255).astype(np.uint8)
    image = np.broadcast_to(base.astype(np.uint8), (height, width, 3)).copy()  # stripes
    period = int(rng.integers(8, 40))
    stripe = rng.integers(0, 256, 3).astype(np.uint8)
    for start in range(0, width, 2 * period):
        image[:, start : start + period] = stripe
    return image


def _covered_share(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area: how much of the smaller one the other covers."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 1.0


def _draw(
    rng: np.random.Generator, image: np.ndarray, shape: str, size: int, cx: int, cy: int
) -> tuple[int, int, int, int]:
    """Draw one shape; return its tight box as 0-based inclusive pixel corners (x0, y0, x1, y1)."""
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    half = size // 2
    if shape == "circle":
        cv2.circle(image, (cx, cy), half, colour, thickness=-1)
        points = np.array([[cx - half, cy - half], [cx + half, cy + half]])
    elif shape == "rectangle":
        aspect = rng.uniform(0.5, 1.0)
        hw, hh = (half, int(half * aspect)) if rng.random() < 0.5 else (int(half * aspect), half)
        points = np.array([[cx - hw, cy - hh], [cx + hw, cy + hh]])
        cv2.rectangle(image, tuple(points[0]), tuple(points[1]), colour, thickness=-1)
    else:
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
        points = np.stack([cx + half * np.cos(angles), cy + half * np.sin(angles)], 1).round().astype(np.int32)
        cv2.fillPoly(image, [points], colour)
    height, width = image.shape[:2]
    x0, y0 = np.clip(points.min(0), 0, [width - 1, height - 1])
    x1, y1 = np.clip(points.max(0), 0, [width - 1, height - 1])
    return int(x0), int(y0), int(x1), int(y1)


def _voc_xml(filename: str, width: int, height: int, objects: list[tuple[str, tuple[int, int, int, int]]]) -> bytes:
    root = etree.Element("annotation")
    etree.SubElement(root, "folder").text = "images"
    etree.SubElement(root, "filename").text = filename
    size = etree.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        etree.SubElement(size, tag).text = str(value)
    for name, (x0, y0, x1, y1) in objects:
        obj = etree.SubElement(root, "object")
        etree.SubElement(obj, "name").text = name
        etree.SubElement(obj, "difficult").text = "0"
        box = etree.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1 + 1), ("ymax", y1 + 1)):  # VOC is 1-based
            etree.SubElement(box, tag).text = str(value)
    return etree.tostring(root, pretty_print=True)


def synthesize(out: Path, *, images: int = 200, seed: int = 0, reporter: Reporter | None = None) -> SynthResult:
    reporter = reporter or SilentReporter()
    if images < 1:
        raise DataError("--images must be at least 1")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(
            f"{out} already exists and is not an empty folder",
            hint="choose a new folder for the generated dataset; nothing was written",
        )
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(SYNTH_CLASSES, 0)
    backgrounds = 0
    for index in reporter.track(range(images), "Generating images", total=images):
        height, width = (int(v) for v in rng.integers(*IMAGE_SIDE_RANGE, size=2, endpoint=True))
        image = _background(rng, height, width)
        objects: list[tuple[str, tuple[int, int, int, int]]] = []
        wanted = 0 if rng.random() < BACKGROUND_ONLY_SHARE else int(rng.integers(*OBJECTS_RANGE, endpoint=True))
        for _ in range(wanted):
            shape = SYNTH_CLASSES[int(rng.integers(len(SYNTH_CLASSES)))]
            size = int(rng.uniform(*OBJECT_SIZE_RANGE) * min(height, width))
            for _ in range(PLACEMENT_TRIES):
                cx = int(rng.integers(size // 2, width - size // 2))
                cy = int(rng.integers(size // 2, height - size // 2))
                guess = (cx - size // 2, cy - size // 2, cx + size // 2, cy + size // 2)
                if all(_covered_share(guess, box) <= MAX_COVERED_SHARE for _, box in objects):
                    objects.append((shape, _draw(rng, image, shape, size, cx, cy)))
                    counts[shape] += 1
                    break
        backgrounds += not objects
        stem = f"synth_{index:05d}"
        write_image(out / "images" / f"{stem}.jpg", image)
        annotations = out / "Annotations"
        annotations.mkdir(parents=True, exist_ok=True)
        (annotations / f"{stem}.xml").write_bytes(_voc_xml(f"{stem}.jpg", width, height, objects))
    return SynthResult(root=out.resolve(), images=images, objects=counts, background_images=backgrounds)
