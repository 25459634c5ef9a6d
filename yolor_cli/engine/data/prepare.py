"""``dataset split``, ``dataset voc2yolo`` and ``dataset prepare`` as engine calls.

All three scan the VOC folder the same way and report what they skipped. Files the user may
have edited (image lists, ImageSets, data.yaml, classes.names) are backed up as ``*.bak`` before
a different version replaces them; re-running with the same inputs rewrites nothing (label files
included). Everything is decided and checked before the first file is written; the labels come
next, and the small files that point at them last, so a failure leaves the previous version whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from yolor_cli.engine.data.convert import ConversionReport, infer_classes, write_labels
from yolor_cli.engine.data.skips import Skipped, SkipReason, group_skipped
from yolor_cli.engine.data.split import SPLIT_NAMES, Split, stratified_split
from yolor_cli.engine.data.voc import VocItem, VocLayout, VocScan, find_layout, scan_voc
from yolor_cli.engine.errors import DataError
from yolor_cli.engine.files import write_text_keeping_backup
from yolor_cli.engine.names import normalise_class_name
from yolor_cli.engine.reporting import Reporter, SilentReporter

IMAGESET_NAMES = ("train", "val", "test", "trainval")
DATA_YAML = "data.yaml"
CLASSES_FILE = "classes.names"


@dataclass
class DatasetResult:
    """What a dataset command did; the CLI renders it."""

    root: Path
    images: dict[str, int] = field(default_factory=dict)  # per split
    classes: list[str] = field(default_factory=list)
    objects_per_class: dict[str, int] = field(default_factory=dict)
    backgrounds: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _write(result: DatasetResult, path: Path, text: str) -> None:
    backup = write_text_keeping_backup(path, text)
    result.written.append(path)
    if backup is not None:
        result.backups.append(backup)


def _scan(root: Path, reporter: Reporter) -> VocScan:
    scan = scan_voc(find_layout(root), reporter)
    if not scan.items:
        detail = "; ".join(f"{group.files} {group.reason}" for group in group_skipped(scan.skipped)[:3])
        raise DataError(
            f"{scan.layout.root} has no usable image (an image with a readable XML of the same name)"
            + (f": {detail}" if detail else ""),
            hint="check that Annotations/ and images/ hold files with matching names",
        )
    return scan


def _object_classes(item: VocItem, classes: list[str] | None, keep_difficult: bool) -> set[str]:
    """The classes an image will be labelled with: what stratification must balance."""
    return {
        obj.name
        for obj in item.annotation.objects
        if obj.name and (classes is None or obj.name in classes) and (keep_difficult or not obj.difficult)
    }


def _split(
    scan: VocScan,
    val: float,
    test: float,
    seed: int,
    result: DatasetResult,
    classes: list[str] | None = None,
    keep_difficult: bool = False,
) -> tuple[Split, dict[Path, str]]:
    """The split and the ImageSets files that hold it (written by the caller, after every check)."""
    classes_of = {item.stem: _object_classes(item, classes, keep_difficult) for item in scan.items}
    split = stratified_split(classes_of, val=val, test=test, seed=seed)
    files = {
        scan.layout.imagesets / f"{name}.txt": "".join(f"{stem}\n" for stem in stems)
        for name, stems in split.as_dict().items()
    }
    result.images = {name: len(getattr(split, name)) for name in SPLIT_NAMES}
    every_class = set().union(*classes_of.values())
    for held_out in ("val", "test"):
        stems = getattr(split, held_out)
        missing = sorted(every_class - set().union(*(classes_of[stem] for stem in stems))) if stems else []
        if missing:
            result.notes.append(f"{held_out} has no image of {', '.join(missing)} (too few images to spare one)")
    return split, files


def _write_all(result: DatasetResult, files: dict[Path, str]) -> None:
    """The small files a command writes, last and together: each atomically (see
    write_text_keeping_backup), and only after the labels and every check, so a failure earlier
    leaves the previous ImageSets, lists and data.yaml as they were. A failure among them (a full
    disk) puts back the ones already written, so ImageSets never mixes two splits."""
    done: list[tuple[Path, Path | None, bool]] = []  # (path, its backup, whether it existed)
    try:
        for path, text in files.items():
            existed, backups = path.exists(), len(result.backups)
            _write(result, path, text)
            done.append((path, result.backups[-1] if len(result.backups) > backups else None, existed))
    except BaseException:
        for path, backup, existed in reversed(done):
            if backup is not None:
                os.replace(backup, path)  # a rename: it needs no free space
            elif not existed:
                path.unlink(missing_ok=True)
        raise


def split_dataset(
    root: Path, *, val: float = 0.1, test: float = 0.1, seed: int = 0, reporter: Reporter | None = None
) -> DatasetResult:
    reporter = reporter or SilentReporter()
    scan = _scan(root, reporter)
    result = DatasetResult(root=scan.layout.root, skipped=list(scan.skipped))
    _write_all(result, _split(scan, val, test, seed, result)[1])
    return result


def read_imagesets(layout: VocLayout) -> dict[str, list[str]]:
    """Stems per split from ImageSets/<split>.txt, or standard VOC's ImageSets/Main/<split>.txt."""
    found: dict[str, list[str]] = {}
    for name in SPLIT_NAMES:
        for folder in (layout.imagesets, layout.imagesets / "Main"):
            path = folder / f"{name}.txt"
            if path.is_file():
                lines = path.read_text(encoding="utf-8").splitlines()
                found[name] = [line.split()[0] for line in lines if line.strip()]
                break
    return found


def _classes(scan: VocScan, classes: list[str] | None) -> list[str]:
    """The classes to label with; each one line of classes.names (see names.py), so that file always
    has exactly nc lines."""
    if classes is None:
        classes = infer_classes(scan.items)  # already normalised when the XML was read
        if not classes:
            raise DataError(f"the annotations in {scan.layout.annotations} name no object class")
    try:
        return [normalise_class_name(name) for name in classes]
    except ValueError as error:
        raise DataError(f"the class list: {error}", hint="class names are single lines of printable text") from None


def _convert(
    scan: VocScan, classes: list[str], keep_difficult: bool, result: DatasetResult, reporter: Reporter
) -> ConversionReport:
    report = write_labels(scan.items, classes, scan.layout.labels, keep_difficult=keep_difficult, reporter=reporter)
    result.classes = list(classes)
    result.objects_per_class = {name: report.objects_per_class.get(name, 0) for name in classes}
    result.backgrounds = len(report.backgrounds)
    result.skipped.extend(report.file_issues)
    if report.difficult_skipped:
        result.notes.append(f"{report.difficult_skipped} difficult objects skipped (--keep-difficult keeps them)")
    if report.sizes_from_image:
        result.notes.append(
            f"{report.sizes_from_image} annotations had a missing or wrong <size>; the image's own size was used"
        )
    empty = [name for name, count in result.objects_per_class.items() if count == 0]
    if empty:
        result.notes.append(f"no object of class {', '.join(empty)} was found")
    return report


def _classes_file(scan: VocScan, classes: list[str]) -> dict[Path, str]:
    """classes.names: one line per class, so exactly nc lines (names are single lines: see _classes)."""
    return {scan.layout.root / CLASSES_FILE: "".join(f"{name}\n" for name in classes)}


def _lists(scan: VocScan, splits: dict[str, list[str]], result: DatasetResult) -> dict[str, tuple[Path, str]]:
    """The image list file of each split that has images, and its text (written by the caller)."""
    usable = {item.stem: item for item in scan.items}
    lists: dict[str, tuple[Path, str]] = {}
    for name in SPLIT_NAMES:
        stems = splits.get(name, [])
        unusable = [stem for stem in stems if stem not in usable]
        for stem in unusable:
            result.skipped.append(Skipped(stem, SkipReason.NOT_USABLE, subject=name))
        paths = [str(usable[stem].image) for stem in stems if stem in usable]
        if paths:
            lists[name] = (scan.layout.root / f"{name}.txt", "".join(f"{path}\n" for path in paths))
        result.images[name] = len(paths)
    return lists


def voc_to_yolo(
    root: Path, *, classes: list[str] | None = None, keep_difficult: bool = False, reporter: Reporter | None = None
) -> DatasetResult:
    reporter = reporter or SilentReporter()
    scan = _scan(root, reporter)
    result = DatasetResult(root=scan.layout.root, skipped=list(scan.skipped))
    classes = _classes(scan, classes)
    _convert(scan, classes, keep_difficult, result, reporter)
    files = _classes_file(scan, classes)
    splits = read_imagesets(scan.layout)
    if splits:
        files.update(_lists(scan, splits, result).values())
    else:
        result.notes.append("no ImageSets/*.txt found, so no image lists were written; run `yolor dataset split`")
    _write_all(result, files)
    return result


def data_yaml_text(root: Path, classes: list[str], lists: dict[str, Path]) -> str:
    entries = {
        "path": str(root),
        **{name: lists[name].name if name in lists else None for name in SPLIT_NAMES},
        "nc": len(classes),
        "names": list(classes),
    }
    return "# Written by `yolor dataset prepare`; list paths are relative to `path`.\n" + yaml.safe_dump(
        entries, sort_keys=False, allow_unicode=True
    )


def prepare_dataset(
    root: Path,
    *,
    classes: list[str] | None = None,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    keep_difficult: bool = False,
    reporter: Reporter | None = None,
) -> DatasetResult:
    reporter = reporter or SilentReporter()
    scan = _scan(root, reporter)
    result = DatasetResult(root=scan.layout.root, skipped=list(scan.skipped))
    classes = _classes(scan, classes)
    split, files = _split(scan, val, test, seed, result, classes, keep_difficult)
    lists = _lists(scan, {name: getattr(split, name) for name in SPLIT_NAMES}, result)
    if "train" not in lists:
        raise DataError("the split left no image for training")
    _convert(scan, classes, keep_difficult, result, reporter)  # the labels: the bulk of the writing
    files.update(_classes_file(scan, classes))
    files.update(lists.values())
    list_paths = {name: path for name, (path, _) in lists.items()}
    files[scan.layout.root / DATA_YAML] = data_yaml_text(scan.layout.root, result.classes, list_paths)
    _write_all(result, files)
    return result
