"""Finding, checking and reading image files."""

from __future__ import annotations

import stat
import warnings
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


def special_file_kind(path: Path) -> str | None:
    """What ``path`` is in words when it exists but is not a regular file ("a named pipe (FIFO)"),
    else None. Checked before anything opens a listed file: opening a FIFO waits for a writer
    forever, and a device may never end."""
    try:
        mode = path.stat().st_mode
    except OSError:  # missing or unreadable: the open that follows says so
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    return "a folder" if stat.S_ISDIR(mode) else "a device or socket"


def probe_image(path: Path) -> ImageInfo:
    """Size as OpenCV will decode it (EXIF orientation applied), checked without a full decode.

    Raises UnusableFile (a DataError) whose message is a short reason alone (callers name the file).
    An image larger than PIL's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS`` twice over) is
    one of them: decoding it would take gigabytes. Below that limit PIL only warns, and the image is
    used (a large aerial photograph is data, not an attack).
    """
    kind = special_file_kind(path)
    if kind is not None:
        raise UnusableFile(SkipReason.NOT_A_FILE, kind)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:  # verify() leaves the object unusable; reopen for the header
                width, height = image.size
                if image.getexif().get(EXIF_ORIENTATION) in ROTATED_ORIENTATIONS:
                    width, height = height, width
    except FileNotFoundError:
        raise UnusableFile(SkipReason.MISSING_IMAGE) from None
    except Image.DecompressionBombError as exc:
        raise UnusableFile(SkipReason.IMAGE_TOO_LARGE, _too_large_detail(str(exc))) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # PIL names the file by its full path; the report names it already (relative to the root)
        raise UnusableFile(SkipReason.CORRUPT_IMAGE, str(exc).replace(str(path), path.name)) from None
    if min(width, height) < MIN_IMAGE_SIDE:
        raise UnusableFile(SkipReason.IMAGE_TOO_SMALL, f"{width}x{height} pixels")
    return ImageInfo(width=width, height=height)


def _too_large_detail(message: str) -> str:
    """PIL's "Image size (900000000 pixels) exceeds limit of 178956970 pixels, could be
    decompression bomb DOS attack." in fewer words; PIL's own text when it says something else."""
    numbers = [int(word) for word in message.replace("(", " ").split() if word.isdigit()]
    if len(numbers) >= 2:
        return f"{numbers[0]:,} pixels, more than the {numbers[1]:,} that are decoded safely"
    return message


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 (h, w, 3). Reads through numpy so non-ASCII paths work on every platform."""
    kind = special_file_kind(path)
    if kind is not None:
        raise DataError(f"cannot read image {path}: it is {kind}, not a regular file")
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
