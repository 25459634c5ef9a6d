"""VOC boxes to YOLO label files, with an account of every object that was left out and why."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from yolor_cli.engine.config import parse_class_list  # noqa: F401  (its home is the config layer; kept importable here)
from yolor_cli.engine.data.images import special_file_kind
from yolor_cli.engine.data.skips import Skipped, SkipReason
from yolor_cli.engine.data.voc import VocItem
from yolor_cli.engine.errors import DataError
from yolor_cli.engine.reporting import Reporter, SilentReporter

LABEL_DECIMALS = 6


@dataclass(frozen=True)
class YoloRow:
    cls: int
    cx: float
    cy: float
    w: float
    h: float

    def line(self) -> str:
        d = LABEL_DECIMALS
        return f"{self.cls} {self.cx:.{d}f} {self.cy:.{d}f} {self.w:.{d}f} {self.h:.{d}f}"


def voc_box_to_yolo(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[float, float, float, float] | None:
    """A VOC box (1-based, inclusive pixel indices) to normalised cx, cy, w, h; None if degenerate.

    Pixel ``xmin`` (1-based) starts at 0-based edge ``xmin - 1`` and pixel ``xmax`` ends at edge
    ``xmax``, so a box covering pixels 1..W spans the whole image. Boxes are clipped to the image.
    """
    xmin, ymin, xmax, ymax = box
    x0, y0 = min(max(xmin - 1, 0.0), width), min(max(ymin - 1, 0.0), height)
    x1, y1 = min(max(xmax, 0.0), width), min(max(ymax, 0.0), height)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return None
    return (x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height


def infer_classes(items: Iterable[VocItem]) -> list[str]:
    """Every object name in the annotations, sorted alphabetically."""
    return sorted({obj.name for item in items for obj in item.annotation.objects if obj.name})


@dataclass
class ConversionReport:
    classes: list[str]
    objects_per_class: Counter[str] = field(default_factory=Counter)
    backgrounds: list[str] = field(default_factory=list)
    unknown_classes: Counter[str] = field(default_factory=Counter)
    difficult_skipped: int = 0
    degenerate_boxes: int = 0
    sizes_from_image: int = 0  # <size> missing or different from the image: the image wins
    file_issues: list[Skipped] = field(default_factory=list)


def label_rows(
    item: VocItem, class_index: dict[str, int], keep_difficult: bool, report: ConversionReport
) -> list[YoloRow]:
    width, height = item.info.width, item.info.height
    if item.annotation.size != (width, height):
        report.sizes_from_image += 1
    rows: list[YoloRow] = []
    unknown: Counter[str] = Counter()
    degenerate = 0
    for obj in item.annotation.objects:
        if obj.difficult and not keep_difficult:
            report.difficult_skipped += 1
            continue
        if obj.name not in class_index:
            unknown[obj.name] += 1
            continue
        converted = voc_box_to_yolo(obj.box, width, height) if obj.box else None
        if converted is None:
            degenerate += 1
            continue
        rows.append(YoloRow(class_index[obj.name], *converted))
        report.objects_per_class[obj.name] += 1
    if unknown:
        report.unknown_classes.update(unknown)
        report.file_issues.extend(
            Skipped(str(item.annotation.path), SkipReason.UNKNOWN_CLASS, subject=name, objects=count)
            for name, count in sorted(unknown.items())
        )
    if degenerate:
        report.degenerate_boxes += degenerate
        report.file_issues.append(Skipped(str(item.annotation.path), SkipReason.DEGENERATE_BOX, objects=degenerate))
    if not rows:
        report.backgrounds.append(item.stem)
    return rows


def write_labels(
    items: Sequence[VocItem],
    classes: list[str],
    labels_dir: Path,
    *,
    keep_difficult: bool = False,
    reporter: Reporter | None = None,
) -> ConversionReport:
    """One ``labels/<stem>.txt`` per item; an image without usable objects gets an empty file.

    Every file is converted (and the class list checked) before the first is written, and a file
    whose content is already right is not touched: a prepared dataset may be read-only, and a second
    run changes nothing (not even modification times, which the label cache keys on).
    """
    reporter = reporter or SilentReporter()
    class_index = {name: index for index, name in enumerate(classes)}
    report = ConversionReport(classes=list(classes))
    contents = {
        item.stem: "".join(row.line() + "\n" for row in label_rows(item, class_index, keep_difficult, report))
        for item in items
    }
    labels_dir.mkdir(parents=True, exist_ok=True)
    for stem in reporter.track(list(contents), "Writing YOLO labels"):
        write_if_changed(labels_dir / f"{stem}.txt", contents[stem])
    return report


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` unless ``path`` already holds exactly it; True when written.

    Derived files: a plain write (no fsync per file) keeps thousands of them fast. A FIFO or other
    special file in the way is refused, not opened (opening one would wait forever).
    """
    data = text.encode("utf-8")
    kind = special_file_kind(path)
    if kind is not None:
        raise DataError(f"{path} is {kind}, not a label file", hint="remove it and run the command again")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.write_bytes(data)
    return True
