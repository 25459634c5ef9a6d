"""A small VOC detection set composited from real photographs, for training benchmarks.

No data may be downloaded at run time, so the photographs are the sample images that the
scikit-image wheel ships (``skimage/data``): 100 real face photos (``lfw_subset.npy``, its first
half) and whole photos of a cat (``chelsea``), a cup (``coffee``), a rocket and a motorcycle are the
objects; each is pasted with a soft elliptical mask (no rectangle edges to learn) at a random scale,
aspect, flip and brightness onto a random crop of a photographed background (grass, gravel, brick,
the astronaut, the Hubble deep field, the moon, the cameraman, a retina, a stained tissue, a page,
the right motorcycle view). Five classes, 1-4 objects an image, deterministic for a seed.

``--variant clutter`` is a second, harder set from other photographs: four classes of small objects
(the ~20 single coins cut out of the ``coins`` photo, the 100 faces, the ``clock_motion`` photo and
the cup), 2-8 of them an image at 6-25 % of the side, among 0-4 unlabelled distractors (the 100
non-face photo patches of ``lfw_subset.npy``) on the same backgrounds.

    python benchmarks/photo_data.py OUT [--images 240] [--seed 0] [--variant objects|clutter]
        [--skimage-data DIR]
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
CLUTTER_OBJECTS = {"clock": "clock_motion.png", "cup": "coffee.png"}
CLUTTER_PER_IMAGE = (2, 8)
CLUTTER_DISTRACTORS = (0, 4)
CLUTTER_SCALE = (0.06, 0.25)
VARIANTS = ("objects", "clutter")
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


def _coins(folder: Path) -> list[np.ndarray]:
    """The single coins of the ``coins`` photograph, cut out by Otsu's threshold (touching ones dropped)."""
    gray = cv2.imread(str(folder / "coins.png"), cv2.IMREAD_GRAYSCALE)
    _, mask = cv2.threshold(cv2.GaussianBlur(gray, (5, 5), 0), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    coins = []
    for x, y, w, h, _ in stats[1:]:
        if 25 <= w <= 80 and 25 <= h <= 80:
            x0, y0 = max(x - 3, 0), max(y - 3, 0)
            coins.append(cv2.cvtColor(gray[y0 : y + h + 3, x0 : x + w + 3], cv2.COLOR_GRAY2BGR))
    return coins


def _pools(folder: Path, variant: str) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray]]:
    """Each class's photos, and the unlabelled distractors pasted among them."""
    patches = [cv2.cvtColor(p, cv2.COLOR_GRAY2BGR) for p in (np.load(folder / "lfw_subset.npy") * 255).astype(np.uint8)]
    if variant == "objects":
        pools = {"face": patches[:FACES]}
        pools.update({name: [_read(folder, file)] for name, file in OBJECTS.items()})
        return pools, []
    pools = {"coin": _coins(folder), "face": patches[:FACES]}
    pools.update({name: [_read(folder, file)] for name, file in CLUTTER_OBJECTS.items()})
    return pools, patches[FACES:]


def _paste(
    canvas: np.ndarray, obj: np.ndarray, boxes: list, name: str | None, rng: np.random.Generator,
    scales: tuple[float, float] = SCALE,
) -> None:  # fmt: skip
    """Paste at a free spot; a distractor (``name`` None) takes its spot but gets no box."""
    for _ in range(PLACEMENT_TRIES):
        scale = rng.uniform(*scales) * SIZE
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


def make_photo_voc(
    out: Path, images: int = 240, seed: int = 0, data: Path | None = None, variant: str = "objects"
) -> Path:
    folder = data or skimage_data_dir()
    rng = np.random.default_rng(seed)
    pools, distractors = _pools(folder, variant)
    names = list(pools)  # in the order _pools builds them: the draws (and so the images) depend on it
    per_image, scales = (OBJECTS_PER_IMAGE, SCALE) if variant == "objects" else (CLUTTER_PER_IMAGE, CLUTTER_SCALE)
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
        for _ in range(int(rng.integers(per_image[0], per_image[1] + 1))):
            name = names[int(rng.integers(len(names)))]
            pool = pools[name]
            _paste(canvas, pool[int(rng.integers(len(pool)))], boxes, name, rng, scales)
        if distractors:
            for _ in range(int(rng.integers(CLUTTER_DISTRACTORS[0], CLUTTER_DISTRACTORS[1] + 1))):
                _paste(canvas, distractors[int(rng.integers(len(distractors)))], boxes, None, rng, scales)
        stem = f"photo_{index:04d}"
        cv2.imwrite(str(out / "JPEGImages" / f"{stem}.jpg"), canvas.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        objects = "".join(
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for x0, y0, x1, y1, name in boxes
            if name is not None
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
    parser.add_argument("--variant", choices=VARIANTS, default="objects")
    parser.add_argument("--skimage-data", type=Path)
    args = parser.parse_args()
    make_photo_voc(args.out, args.images, args.seed, args.skimage_data, args.variant)
    print(f"wrote {args.images} images to {args.out}")


if __name__ == "__main__":
    main()
