"""What ``yolor dataset split|voc2yolo|prepare|synth`` are asked to do, each one request whose
``run`` is the command's one engine call. Only the standard library at import (see engine/options.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from yolor_cli.engine.options import REQUIRED, Request, names_file_option, option, seed_option

if TYPE_CHECKING:
    from yolor_cli.engine.data.prepare import DatasetResult
    from yolor_cli.engine.data.synth import SynthResult
    from yolor_cli.engine.reporting import Reporter

MAX_FRACTION = 0.99  # a split of every image would leave none to train on
MAX_SYNTH_IMAGES = 1_000_000  # a demo set; more is a typo that would fill the disk


def root_option() -> object:
    return option(REQUIRED, "--root", help="VOC folder: Annotations/ and images/ (or JPEGImages/).", path_kind="dir")


def classes_option() -> object:
    return option(
        None,
        "--classes",
        help="Comma-separated class names, in label order. Default: every name in the XML files, sorted.",
    )


def keep_difficult_option() -> object:
    return option(False, "--keep-difficult", help="Keep objects marked difficult=1.")


def val_option() -> object:
    return option(0.1, "--val", help="Fraction of images for validation.", min=0.0, max=MAX_FRACTION)


def test_option() -> object:
    return option(0.1, "--test", help="Fraction of images for testing.", min=0.0, max=MAX_FRACTION)


def split_seed_option() -> object:
    return seed_option(help="Random seed of the split (same seed, same split).")


def _class_list(classes: str | None, names: Path | None) -> list[str] | None:
    from yolor_cli.engine.data.convert import parse_class_list

    return parse_class_list(classes, names)


@dataclass(frozen=True)
class SplitRequest(Request):
    """``yolor dataset split``: ImageSets/{train,val,test,trainval}.txt for ``root``."""

    root: Path = root_option()
    val: float = val_option()
    test: float = test_option()
    seed: int = split_seed_option()

    def run(self, reporter: Reporter | None = None) -> DatasetResult:
        from yolor_cli.engine.data.prepare import split_dataset

        return split_dataset(self.root, val=self.val, test=self.test, seed=self.seed, reporter=reporter)


@dataclass(frozen=True)
class Voc2YoloRequest(Request):
    """``yolor dataset voc2yolo``: labels/*.txt and image lists for ``root``."""

    root: Path = root_option()
    classes: str | None = classes_option()
    names: Path | None = names_file_option()
    keep_difficult: bool = keep_difficult_option()

    def run(self, reporter: Reporter | None = None) -> DatasetResult:
        from yolor_cli.engine.data.prepare import voc_to_yolo

        classes = _class_list(self.classes, self.names)
        return voc_to_yolo(self.root, classes=classes, keep_difficult=self.keep_difficult, reporter=reporter)


@dataclass(frozen=True)
class PrepareRequest(Request):
    """``yolor dataset prepare``: split, convert, data.yaml and classes.names for ``root``."""

    root: Path = root_option()
    classes: str | None = classes_option()
    names: Path | None = names_file_option()
    val: float = val_option()
    test: float = test_option()
    seed: int = split_seed_option()
    keep_difficult: bool = keep_difficult_option()

    def run(self, reporter: Reporter | None = None) -> DatasetResult:
        from yolor_cli.engine.data.prepare import prepare_dataset

        return prepare_dataset(
            self.root,
            classes=_class_list(self.classes, self.names),
            val=self.val,
            test=self.test,
            seed=self.seed,
            keep_difficult=self.keep_difficult,
            reporter=reporter,
        )


@dataclass(frozen=True)
class SynthRequest(Request):
    """``yolor dataset synth``: a new VOC folder of generated shapes."""

    out: Path = option(REQUIRED, "--out", help="New folder for the generated VOC dataset.")
    images: int = option(200, "--images", help="Number of images.", min=1, max=MAX_SYNTH_IMAGES)
    seed: int = seed_option(help="Random seed.")

    def run(self, reporter: Reporter | None = None) -> SynthResult:
        from yolor_cli.engine.data.synth import synthesize

        return synthesize(self.out, images=self.images, seed=self.seed, reporter=reporter)
