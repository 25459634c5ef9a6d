"""Finding, checking and reading image files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from yolor_cli.engine.data.skips import SkipReason, UnusableFile
from yolor_cli.engine.errors import DataError
from yolor_cli.engine.files import atomic_write

IMAGE_FOLDERS = ("images", "JPEGImages")  # the seed's layout first, then standard VOC
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
MIN_IMAGE_SIDE = 10  # smaller files are thumbnails or placeholders, not training images
EXIF_ORIENTATION = 0x0112
ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int


def probe_image(path: Path) -> ImageInfo:
    """Size as OpenCV will decode it (EXIF orientation applied), checked without a full decode.

    Raises UnusableFile (a DataError) whose message is a short reason alone (callers name the file).
    """
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:  # verify() leaves the object unusable; reopen for the header
            width, height = image.size
            if image.getexif().get(EXIF_ORIENTATION) in ROTATED_ORIENTATIONS:
                width, height = height, width
    except FileNotFoundError:
        raise UnusableFile(SkipReason.MISSING_IMAGE) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # PIL names the file by its full path; the report names it already (relative to the root)
        raise UnusableFile(SkipReason.CORRUPT_IMAGE, str(exc).replace(str(path), path.name)) from None
    if min(width, height) < MIN_IMAGE_SIDE:
        raise UnusableFile(SkipReason.IMAGE_TOO_SMALL, f"{width}x{height} pixels")
    return ImageInfo(width=width, height=height)


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 (h, w, 3). Reads through numpy so non-ASCII paths work on every platform."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"corrupt image {path}: it cannot be decoded")
    return image


def write_image(path: Path, image: np.ndarray, quality: int = 95) -> None:
    ok, encoded = cv2.imencode(path.suffix or ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DataError(f"cannot encode image for {path}")
    atomic_write(path, lambda stream: stream.write(encoded.tobytes()), sync=False)  # a full disk: one message
