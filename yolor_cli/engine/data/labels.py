"""Image lists, label files and the label cache.

The cache is JSON (never a pickle) beside the labels folder. Each image has its own signature
(sizes and modification times of the image and its label file) and the file carries a format
version, so a changed file is re-checked alone and a stale or foreign cache is simply rebuilt.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolor_cli.engine.data.images import IMAGE_FOLDERS, is_image, probe_image, special_file_kind
from yolor_cli.engine.errors import DataError
from yolor_cli.engine.files import atomic_write
from yolor_cli.engine.reporting import Reporter, SilentReporter

CACHE_VERSION = 1
CACHE_SUFFIX = ".cache.json"
COORDINATE_TOLERANCE = 1e-6  # rounding in 6-decimal label files may step a hair outside [0, 1]


def collect_image_files(entries: tuple[Path, ...] | list[Path]) -> list[Path]:
    """Images from list files (one path per line, relative to the list's folder), folders
    (searched recursively) and single image files; sorted, without duplicates."""
    found: set[Path] = set()
    for entry in entries:
        if entry.is_dir():
            found.update(p for p in entry.rglob("*") if p.is_file() and is_image(p))
        elif is_image(entry):
            found.add(entry)
        elif entry.is_file():
            for line in entry.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    path = Path(line).expanduser()
                    found.add(path if path.is_absolute() else (entry.parent / path))
        else:
            raise DataError(f"image source not found: {entry}")
    return sorted(found)


def label_path_for(image: Path) -> Path:
    """``.../images/a/b.jpg`` -> ``.../labels/a/b.txt`` (also for JPEGImages/); else beside the image."""
    parts = image.parts
    for position in range(len(parts) - 2, -1, -1):
        if parts[position] in IMAGE_FOLDERS:
            return Path(*parts[:position], "labels", *parts[position + 1 :]).with_suffix(".txt")
    return image.with_suffix(".txt")


@dataclass
class ImageRecord:
    """A verified image: its size and its label rows ``[class, cx, cy, w, h]`` (normalised)."""

    image: Path
    width: int
    height: int
    labels: np.ndarray  # (n, 5) float32


@dataclass
class LabelScan:
    records: list[ImageRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing_labels: int = 0
    duplicates_removed: int = 0
    class_out_of_range: int = 0  # rows skipped because their class is not below nc (the data file lacks it)
    first_out_of_range: str | None = None  # the warning about the first of them, to quote


def _signature(image: Path, label: Path) -> list[int]:
    image_stat = image.stat()
    label_stat = label.stat() if label.exists() else None
    return [
        image_stat.st_size,
        image_stat.st_mtime_ns,
        label_stat.st_size if label_stat else -1,
        label_stat.st_mtime_ns if label_stat else -1,
    ]


def _parse_label_file(label: Path) -> tuple[list[list[float]], list[str]]:
    """Rows that are five numbers with a whole, non-negative class and coordinates in [0, 1]."""
    rows, problems = [], []
    if not label.exists():
        return rows, problems
    for number, line in enumerate(label.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{label}:{number}"
        if len(parts) != 5:
            problems.append(f"{where}: expected 5 columns (class cx cy w h), found {len(parts)}; row skipped")
            continue
        try:
            values = [float(part) for part in parts]
        except ValueError:
            problems.append(f"{where}: non-numeric value; row skipped")
            continue
        if not all(math.isfinite(v) for v in values):
            problems.append(f"{where}: non-finite value; row skipped")
            continue
        cls, coords = values[0], values[1:]
        if cls < 0 or cls != int(cls):
            problems.append(f"{where}: class {parts[0]} is not a class index; row skipped")
        elif any(c < -COORDINATE_TOLERANCE or c > 1 + COORDINATE_TOLERANCE for c in coords) or min(coords[2:]) <= 0:
            problems.append(f"{where}: coordinates outside [0, 1] or empty box; row skipped")
        else:
            rows.append([cls, *(min(max(c, 0.0), 1.0) for c in coords)])
    return rows, problems


def _check(image: Path, label: Path) -> dict:
    try:
        info = probe_image(image)
    except DataError as error:
        return {"ok": False, "reason": f"{image}: {error.message}; image skipped"}
    kind = special_file_kind(label)
    if kind is not None:  # never opened: a FIFO would wait for a writer forever
        return {"ok": False, "reason": f"{label}: the label file is {kind}, not a regular file; image skipped"}
    rows, problems = _parse_label_file(label)
    return {
        "ok": True,
        "size": [info.width, info.height],
        "rows": rows,
        "problems": problems,
        "has_label": label.exists(),
    }


def cache_path_for(images: list[Path]) -> Path:
    """``labels.cache.json`` beside the labels folder of the first image."""
    labels_dir = label_path_for(images[0]).parent
    return labels_dir.with_name(labels_dir.name + CACHE_SUFFIX)


def _load_cache(path: Path) -> dict[str, dict]:
    if special_file_kind(path) is not None:  # not opened (a FIFO would hang); replaced when saved
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(content, dict) or content.get("version") != CACHE_VERSION:
        return {}
    entries = content.get("entries")
    return entries if isinstance(entries, dict) else {}


def scan_labels(images: list[Path], nc: int, *, reporter: Reporter | None = None, use_cache: bool = True) -> LabelScan:
    """Verify every image once (cached) and read its labels; rows with class >= nc are skipped."""
    reporter = reporter or SilentReporter()
    if not images:
        raise DataError("no images found")
    cache_path = cache_path_for(images)
    cache = _load_cache(cache_path) if use_cache else {}
    changed = False
    scan = LabelScan()
    for image in reporter.track(images, "Checking images and labels"):
        label = label_path_for(image)
        key = str(image)
        try:
            signature = _signature(image, label)
        except FileNotFoundError:
            scan.warnings.append(f"{image}: missing image; skipped")
            continue
        entry = cache.get(key)
        if entry is None or entry.get("signature") != signature:
            entry = {"signature": signature, **_check(image, label)}
            cache[key] = entry
            changed = True
        if not entry["ok"]:
            scan.warnings.append(entry["reason"])
            continue
        scan.warnings.extend(entry["problems"])
        scan.missing_labels += not entry["has_label"]
        rows = [row for row in entry["rows"] if row[0] < nc]
        for row in entry["rows"]:
            if row[0] >= nc:
                scan.warnings.append(f"{label}: class {int(row[0])} is not below nc={nc}; row skipped")
                scan.class_out_of_range += 1
                scan.first_out_of_range = scan.first_out_of_range or scan.warnings[-1]
        labels = np.array(rows, dtype=np.float32).reshape(-1, 5)
        unique = np.unique(labels, axis=0) if len(labels) else labels
        if len(unique) < len(labels):
            scan.duplicates_removed += len(labels) - len(unique)
            labels = unique
        scan.records.append(ImageRecord(image=image, width=entry["size"][0], height=entry["size"][1], labels=labels))
    if changed and use_cache:
        _save_cache(cache_path, cache, reporter)
    return scan


def _save_cache(path: Path, cache: dict[str, dict], reporter: Reporter) -> None:
    payload = json.dumps({"version": CACHE_VERSION, "entries": cache}).encode()
    try:
        atomic_write(path, lambda stream: stream.write(payload))
    except OSError as exc:
        reporter.warning(f"label cache not saved ({path}: {exc}); images will be checked again next time")
