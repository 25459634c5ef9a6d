"""Pascal-VOC folders as labelling tools leave them: finding the parts and reading the XML.

Nothing here decides what is usable for training; it reports what it found and why a file
could not be read, so the caller can say exactly what it skipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from yolor_cli.engine.data.images import IMAGE_FOLDERS, ImageInfo, is_image, probe_image
from yolor_cli.engine.data.skips import Skipped, SkipReason, UnusableFile
from yolor_cli.engine.errors import DataError
from yolor_cli.engine.names import normalise_class_name
from yolor_cli.engine.reporting import Reporter, SilentReporter

# lxml must not fetch anything or expand entities from files people download.
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


@dataclass(frozen=True)
class VocLayout:
    root: Path
    annotations: Path
    images: Path
    imagesets: Path
    labels: Path


def find_layout(root: Path) -> VocLayout:
    root = root.resolve()
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}")
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise DataError(
            f"{root} has no Annotations/ folder",
            hint="expected the VOC layout: Annotations/*.xml and images/ (or JPEGImages/)",
        )
    images = next((root / name for name in IMAGE_FOLDERS if (root / name).is_dir()), None)
    if images is None:
        raise DataError(
            f"{root} has neither images/ nor JPEGImages/",
            hint="put the pictures in images/ (or JPEGImages/), named like their XML files",
        )
    return VocLayout(
        root=root, annotations=annotations, images=images, imagesets=root / "ImageSets", labels=root / "labels"
    )


@dataclass(frozen=True)
class VocObject:
    name: str  # whitespace normalised (names.normalise_class_name); "" when the XML gives none
    difficult: bool
    box: tuple[float, float, float, float] | None  # xmin, ymin, xmax, ymax as written (1-based); None if unreadable


@dataclass(frozen=True)
class VocAnnotation:
    path: Path
    size: tuple[int, int] | None  # (width, height) as written; None when absent or unreadable
    objects: tuple[VocObject, ...]


def _text(element: etree._Element, tag: str) -> str | None:
    found = element.find(tag)
    return found.text.strip() if found is not None and found.text is not None else None


def _number(element: etree._Element, tag: str) -> float | None:
    text = _text(element, tag)
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def read_voc(path: Path) -> VocAnnotation:
    """Raises UnusableFile (a DataError) whose message is the reason alone (callers name the file)."""
    try:
        root = etree.parse(str(path), _SAFE_PARSER).getroot()
    except (etree.XMLSyntaxError, OSError) as exc:
        raise UnusableFile(SkipReason.MALFORMED_XML, str(exc).splitlines()[0] if str(exc) else "unreadable") from None
    if root is None or root.tag != "annotation":
        raise UnusableFile(SkipReason.MALFORMED_XML, "the root element is not <annotation>")
    size = None
    size_element = root.find("size")
    if size_element is not None:
        width, height = _number(size_element, "width"), _number(size_element, "height")
        if width and height and width > 0 and height > 0:
            size = (int(width), int(height))
    objects = []
    for element in root.iter("object"):
        name = _text(element, "name") or ""
        if name:
            try:
                name = normalise_class_name(name)
            except ValueError as error:  # a control character: it could not be written to classes.names
                raise UnusableFile(SkipReason.BAD_CLASS_NAME, str(error)) from None
        difficult = _text(element, "difficult") in ("1", "true", "True")
        box_element = element.find("bndbox")
        box = None
        if box_element is not None:
            values = [_number(box_element, tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
            if all(v is not None for v in values):
                box = tuple(values)  # type: ignore[assignment]
        objects.append(VocObject(name=name, difficult=difficult, box=box))
    return VocAnnotation(path=path, size=size, objects=tuple(objects))


@dataclass(frozen=True)
class VocItem:
    """One usable image: it decodes and its annotation parses."""

    stem: str
    image: Path
    info: ImageInfo
    annotation: VocAnnotation


@dataclass
class VocScan:
    layout: VocLayout
    items: list[VocItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _index(folder: Path, accept: Iterable[Path], skipped: list[Skipped], kind: str) -> dict[str, Path]:
    """Files by stem; a second file with the same stem (a.jpg and a.png) is reported, not guessed at."""
    found: dict[str, Path] = {}
    for path in sorted(accept):
        if path.stem in found:
            skipped.append(Skipped(str(path), SkipReason.SAME_NAME, subject=kind, detail=found[path.stem].name))
            continue
        found[path.stem] = path
    return found


def scan_voc(layout: VocLayout, reporter: Reporter | None = None) -> VocScan:
    """Pair images and XML files by stem and check both."""
    reporter = reporter or SilentReporter()
    scan = VocScan(layout=layout)
    images = _index(
        layout.images, (p for p in layout.images.iterdir() if p.is_file() and is_image(p)), scan.skipped, "image"
    )
    xmls = _index(
        layout.annotations,
        (p for p in layout.annotations.iterdir() if p.is_file() and p.suffix.lower() == ".xml"),
        scan.skipped,
        "annotation",
    )
    for stem in sorted(set(images) - set(xmls)):
        scan.skipped.append(Skipped(str(images[stem]), SkipReason.NO_ANNOTATION))
    stems = sorted(xmls)
    for stem in reporter.track(stems, "Checking images and annotations"):
        xml = xmls[stem]
        if stem not in images:
            scan.skipped.append(Skipped(str(xml), SkipReason.MISSING_IMAGE))
            continue
        try:
            annotation = read_voc(xml)
        except UnusableFile as error:
            scan.skipped.append(Skipped(str(xml), error.reason, detail=error.detail))
            continue
        try:
            info = probe_image(images[stem])
        except UnusableFile as error:
            scan.skipped.append(Skipped(str(images[stem]), error.reason, detail=error.detail))
            continue
        scan.items.append(VocItem(stem=stem, image=images[stem], info=info, annotation=annotation))
    return scan
