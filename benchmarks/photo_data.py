"""A small VOC detection set composited from real photographs, for training benchmarks.

No data may be downloaded at run time, so the photographs are the sample images that the
scikit-image wheel ships (``skimage/data``): 100 real face photos (``lfw_subset.npy``, its first
half) and whole photos of a cat (``chelsea``), a cup (``coffee``), a rocket and a motorcycle are the
objects; each is pasted with a soft elliptical mask (no rectangle edges to learn) at a random scale,
aspect, flip and brightness onto a random crop of a photographed background (grass, gravel, brick,
the astronaut, the Hubble deep field, the moon, the cameraman, a retina, a stained tissue, a page,
the right motorcycle view). Five classes, 1-4 objects an image, deterministic for a seed.

    python benchmarks/photo_data.py OUT [--images 240] [--seed 0] [--skimage-data DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2
import numpy as np

SIZE = 416  # image side in pixels
FACES = 100  # lfw_subset.npy: the first 100 of its 200 patches are faces, the rest are not
OBJECTS = {"cat": "chelsea.png", "cup": "coffee.png", "rocket": "rocket.jpg", "motorcycle": "motorcycle_left.png"}
BACKGROUNDS = ("grass.png", "gravel.png", "brick.png", "astronaut.png", "hubble_deep_field.jpg", "moon.png",
               "camera.png", "retina.jpg", "ihc.png", "page.png", "motorcycle_right.png")  # fmt: skip
OBJECTS_PER_IMAGE = (1, 4)
SCALE = (0.15, 0.45)  # object size as a share of the image side
PLACEMENT_TRIES = 20  # draws for a spot that overlaps no earlier object


def skimage_data_dir() -> Path:
    """The photographs inside an installed scikit-image, found without importing it."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-image is not installed: pip install scikit-image, or pass --skimage-data DIR")
    return Path(spec.origin).parent / "data"


def _read(folder: Path, name: str) -> np.ndarray:
    image = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {folder / name}")
    return image


def _paste(canvas: np.ndarray, obj: np.ndarray, boxes: list, name: str, rng: np.random.Generator) -> None:
    for _ in range(PLACEMENT_TRIES):
        scale = rng.uniform(*SCALE) * SIZE
        aspect = rng.uniform(0.75, 1.33) * obj.shape[1] / obj.shape[0]
        w, h = int(scale * np.sqrt(aspect)), int(scale / np.sqrt(aspect))
        if not 16 <= w < SIZE or not 16 <= h < SIZE:
            continue
        x, y = int(rng.integers(0, SIZE - w)), int(rng.integers(0, SIZE - h))
        if any(not (x + w <= x0 or x1 <= x or y + h <= y0 or y1 <= y) for x0, y0, x1, y1, _ in boxes):
            continue
        patch = cv2.resize(obj, (w, h)).astype(np.float32)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        patch = np.clip(patch * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25), 0, 255)
        yy, xx = np.mgrid[0:h, 0:w]
        radius = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        alpha = np.clip((1.15 - radius) / 0.3, 0, 1)[..., None]
        canvas[y : y + h, x : x + w] = alpha * patch + (1 - alpha) * canvas[y : y + h, x : x + w]
        boxes.append((x, y, x + w, y + h, name))
        return


def make_photo_voc(out: Path, images: int = 240, seed: int = 0, data: Path | None = None) -> Path:
    folder = data or skimage_data_dir()
    rng = np.random.default_rng(seed)
    faces = (np.load(folder / "lfw_subset.npy")[:FACES] * 255).astype(np.uint8)
    pools = {"face": [cv2.cvtColor(face, cv2.COLOR_GRAY2BGR) for face in faces]}
    pools.update({name: [_read(folder, file)] for name, file in OBJECTS.items()})
    names = list(pools)  # face, then OBJECTS in order: the draws (and so the images) depend on it
    backgrounds = [_read(folder, name) for name in BACKGROUNDS]
    (out / "JPEGImages").mkdir(parents=True, exist_ok=False)
    (out / "Annotations").mkdir()
    for index in range(images):
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        height, width = background.shape[:2]
        side = int(rng.uniform(0.4, 1.0) * min(height, width))
        y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        canvas = cv2.resize(background[y : y + side, x : x + side], (SIZE, SIZE)).astype(np.float32)
        if rng.random() < 0.5:
            canvas = np.ascontiguousarray(canvas[:, ::-1])
        boxes: list = []
        for _ in range(int(rng.integers(OBJECTS_PER_IMAGE[0], OBJECTS_PER_IMAGE[1] + 1))):
            name = names[int(rng.integers(len(names)))]
            pool = pools[name]
            _paste(canvas, pool[int(rng.integers(len(pool)))], boxes, name, rng)
        stem = f"photo_{index:04d}"
        cv2.imwrite(str(out / "JPEGImages" / f"{stem}.jpg"), canvas.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        objects = "".join(
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for x0, y0, x1, y1, name in boxes
        )
        (out / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{SIZE}</width><height>{SIZE}</height>"
            f"<depth>3</depth></size>{objects}</annotation>"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skimage-data", type=Path)
    args = parser.parse_args()
    make_photo_voc(args.out, args.images, args.seed, args.skimage_data)
    print(f"wrote {args.images} images to {args.out}")


if __name__ == "__main__":
    main()
