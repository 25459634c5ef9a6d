"""A deliberately messy VOC folder with one file per quirk that labelling tools produce."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def _xml(
    filename: str, objects: list[tuple[str, tuple[float, float, float, float], int]], size: tuple[int, int] | None
) -> str:
    parts = [f"<annotation><filename>{filename}</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, (x0, y0, x1, y1), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "".join(parts)


def _image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), 90, dtype=np.uint8)
    ok, data = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(data.tobytes())


def make_messy_voc(root: Path) -> Path:
    """Returns the root. Images live in JPEGImages/ (standard VOC) with mixed extensions."""
    images, annotations = root / "JPEGImages", root / "Annotations"
    annotations.mkdir(parents=True)
    cases = {
        # stem: (image file name or None, (w, h), objects, xml <size> or "omit")
        "cat_1": ("cat_1.jpg", (200, 100), [("cat", (1, 1, 200, 100), 0)], (200, 100)),
        "cat_2": ("cat_2.JPG", (100, 100), [(" cat ", (11, 21, 60, 70), 0)], (100, 100)),
        "cat_3": ("cat_3.jpeg", (120, 80), [("cat", (1, 1, 50, 40), 0), ("dog", (51, 1, 120, 80), 0)], None),
        "dog_1": ("dog_1.png", (160, 120), [("dog", (-10, -5, 500, 60), 0)], (999, 999)),
        "dog_2": ("dog_2.bmp", (100, 100), [("dog", (10, 10, 50, 50), 1), ("dog", (20, 20, 80, 90), 0)], (100, 100)),
        "dog_3": ("dog_3.jpg", (100, 100), [("dog", (40, 30, 30, 80), 0), ("dog", (5, 5, 40, 40), 0)], (100, 100)),
        "bird_1": ("bird_1.jpg", (100, 100), [("bird", (5, 5, 50, 50), 0)], (100, 100)),
        "empty_1": ("empty_1.jpg", (100, 100), [], (100, 100)),
        "alien_1": ("alien_1.jpg", (100, 100), [("alien", (5, 5, 50, 50), 0)], (100, 100)),
    }
    for stem, (image_name, (width, height), objects, size) in cases.items():
        _image(images / image_name, width, height)
        (annotations / f"{stem}.xml").write_text(_xml(image_name, objects, size))
    for index in range(4, 10):  # enough cats and dogs for a stratified split
        _image(images / f"cat_{index}.jpg", 100, 100)
        (annotations / f"cat_{index}.xml").write_text(_xml("x", [("cat", (10, 10, 90, 90), 0)], (100, 100)))
        _image(images / f"dog_{index}.jpg", 100, 100)
        (annotations / f"dog_{index}.xml").write_text(_xml("x", [("dog", (10, 10, 90, 90), 0)], (100, 100)))
    _image(images / "broken.jpg", 50, 50)
    (annotations / "broken.xml").write_text("<annotation><object><name>cat</name>")  # malformed
    (annotations / "no_image.xml").write_text(_xml("no_image.jpg", [("cat", (1, 1, 5, 5), 0)], (10, 10)))
    _image(images / "corrupt.jpg", 10, 10)
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (annotations / "corrupt.xml").write_text(_xml("corrupt.jpg", [("cat", (1, 1, 5, 5), 0)], (10, 10)))
    _image(images / "no_xml.jpg", 50, 50)
    _image(images / "bird_1.png", 100, 100)  # same stem as bird_1.jpg
    (images / "notes.txt").write_text("not an image")
    return root
