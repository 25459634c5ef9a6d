"""A run's model scored once on its val split, for its report: the PR curves and confusion matrix (the
plots ``yolor eval --plots`` draws), the per-class table, and a gallery of the images with the most
errors, ground truth beside detections (drawn by infer's drawing).

"Errors" per image are counted with the evaluator's one-to-one matching of the confusion matrix (the
same detections above the same score): an object missed, a detection of nothing (background), and an
object found with the wrong class.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from yolor_cli.engine.config import load_data_config
from yolor_cli.engine.data.images import read_image
from yolor_cli.engine.data.labels import ImageRecord
from yolor_cli.engine.errors import MissingDependencyError
from yolor_cli.engine.evaluate.errors import error_breakdown
from yolor_cli.engine.evaluate.evaluator import EvalResult, evaluate_model, ground_truth
from yolor_cli.engine.evaluate.metrics import CONFUSION_CONF, ImageDetections, confusion_matrix
from yolor_cli.engine.evaluate.plots import plot_confusion_matrix, plot_errors, plot_metrics
from yolor_cli.engine.infer.drawing import draw_boxes
from yolor_cli.engine.infer.predictor import Detections
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.report.error_section import errors_section
from yolor_cli.engine.report.page import Figure, GalleryItem, Page, Section, Table, data_uri, file_uri, number
from yolor_cli.engine.reporting import Reporter
from yolor_cli.engine.runtime import select_device

GALLERY_WIDTH = 640  # pixels across one gallery tile (ground truth and detections side by side)
GALLERY_JPEG_QUALITY = 80  # small files; the boxes and labels stay readable
PANEL_GAP = 4  # white pixels between the two halves of a tile
REPORT_BATCH = 8  # images per batch when the report scores a model: small, so it fits wherever training did


@dataclass(frozen=True)
class ImageErrors:
    missed: int  # objects no detection matched
    background: int  # detections that matched no object
    wrong_class: int  # objects matched by a detection of another class

    @property
    def total(self) -> int:
        return self.missed + self.background + self.wrong_class

    def describe(self) -> str:
        parts = [(self.missed, "missed"), (self.background, "false detection"), (self.wrong_class, "wrong class")]
        said = ", ".join(
            f"{count} {what}{'s' if count > 1 and what == 'false detection' else ''}" for count, what in parts if count
        )
        return f"{self.total} error{'s' if self.total != 1 else ''}: {said}"


def image_errors(image: ImageDetections, nc: int) -> ImageErrors:
    """One image's errors, from the confusion matrix's matching (detections above its score)."""
    matrix = confusion_matrix([image], nc)
    found = matrix[:nc, :nc]
    return ImageErrors(
        missed=int(matrix[nc, :nc].sum()),
        background=int(matrix[:nc, nc].sum()),
        wrong_class=int(found.sum() - np.trace(found)),
    )


def worst_images(
    results: list[tuple[ImageRecord, Detections]], nc: int, count: int
) -> list[tuple[ImageRecord, Detections, ImageErrors]]:
    """Up to ``count`` images with errors, the most first (ties: more missed objects, then by name)."""
    scored = []
    for record, detections in results:
        gt_boxes, gt_classes = ground_truth(record)
        errors = image_errors(
            ImageDetections(detections.boxes, detections.scores, detections.classes, gt_boxes, gt_classes), nc
        )
        if errors.total:
            scored.append((record, detections, errors))
    scored.sort(key=lambda item: (-item[2].total, -item[2].missed, item[0].image.name))
    return scored[:count]


def gallery_tile(record: ImageRecord, detections: Detections, names: list[str]) -> bytes:
    """The image twice, ground truth left and detections (above the confusion matrix's score) right,
    scaled to :data:`GALLERY_WIDTH` and encoded as JPEG."""
    image = read_image(record.image)
    gt_boxes, gt_classes = ground_truth(record)
    keep = np.asarray(detections.scores) > CONFUSION_CONF
    truth = draw_boxes(image, gt_boxes, gt_classes, names)
    found = draw_boxes(image, detections.boxes[keep], detections.classes[keep], names, detections.scores[keep])
    gap = np.full((image.shape[0], PANEL_GAP, 3), 255, dtype=np.uint8)
    tile = np.concatenate([truth, gap, found], axis=1)
    if tile.shape[1] > GALLERY_WIDTH:
        height = max(1, round(tile.shape[0] * GALLERY_WIDTH / tile.shape[1]))
        tile = cv2.resize(tile, (GALLERY_WIDTH, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, GALLERY_JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode the gallery image of {record.image}")
    return encoded.tobytes()


def per_class_table(result: EvalResult) -> Table:
    m = result.metrics
    rows = [
        [
            "all",
            str(result.images),
            str(result.instances),
            *(number(v, 3) for v in (m.precision, m.recall, m.map50, m.map)),
        ]
    ]
    rows += [
        [
            result.names[c.cls],
            str(c.images),
            str(c.instances),
            *(number(v, 3) for v in (c.precision, c.recall, c.map50, c.map)),
        ]
        for c in m.per_class
    ]
    caption = "COCO mAP; P and R at the confidence with the highest mean F1."
    return Table(["class", "images", "instances", "P", "R", "mAP50", "mAP50-95"], rows, caption)


def add_evaluation(
    page: Page,
    *,
    weights: Path,
    data: str | Path,
    img_size: int,
    device: str,
    gallery: int,
    reporter: Reporter,
) -> None:
    """Score ``weights`` on the val split of ``data`` and add the PR curves, confusion matrix,
    per-class table and gallery sections to ``page``."""
    data_config = load_data_config(data)
    loaded = load_model(weights=weights)
    result, results = evaluate_model(
        loaded.model,
        data_config,
        task="val",
        img_size=img_size,
        batch_size=REPORT_BATCH,
        device=select_device(device),
        reporter=reporter,
    )
    names = list(data_config.names)
    where = f"{weights.name} on the val split of {data_config.source} ({result.images} images, {img_size} px)"
    with tempfile.TemporaryDirectory(prefix="yolor-report-") as scratch:
        try:
            curves = plot_metrics(result.metrics, names, Path(scratch))
            matrix = (
                plot_confusion_matrix(result.confusion, names, Path(scratch)) if result.confusion is not None else None
            )
        except MissingDependencyError as error:
            page.notes.append(f"no PR curves or confusion matrix: {error.message} ({error.hint})")
        else:
            page.add(
                Section(
                    "pr_curves",
                    "Precision-recall curves",
                    figures=[Figure(path.stem.replace("_", " "), file_uri(path)) for path in curves],
                    notes=[where],
                )
            )
            if matrix is not None:
                page.add(
                    Section(
                        "confusion_matrix",
                        "Confusion matrix",
                        figures=[Figure("confusion matrix", file_uri(matrix), "columns: true class, normalised")],
                    )
                )
    page.add(Section("per_class", "Per-class results", tables=[per_class_table(result)], notes=[where]))
    _add_breakdown(page, result, names, where)
    if gallery:
        worst = worst_images(results, len(names), gallery)
        items = [
            GalleryItem(
                record.image.name, data_uri(gallery_tile(record, detections, names), "image/jpeg"), errors.describe()
            )
            for record, detections, errors in worst
        ]
        notes = [
            f"The {len(items)} val images with the most errors: ground truth left, detections scoring above "
            f"{CONFUSION_CONF} right."
            if items
            else "No val image has an error at this score: nothing to show."
        ]
        page.add(Section("gallery", "Worst images", gallery=items, notes=notes))


def _add_breakdown(page: Page, result: EvalResult, names: list[str], where: str) -> None:
    """TIDE's error breakdown of the scored model (what ``yolor eval --errors`` shows), with its chart
    when matplotlib is there."""
    breakdown = error_breakdown(result.detections, len(names))
    with tempfile.TemporaryDirectory(prefix="yolor-report-") as scratch:
        try:
            figure: Path | None = plot_errors(breakdown, names, Path(scratch) / "errors.png")
        except MissingDependencyError:
            figure = None
        errors_section(page, breakdown.payload(names), figure, where)
