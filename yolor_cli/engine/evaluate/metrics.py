"""Detection metrics: exact COCO mAP computed natively, and the official YOLOR formula.

COCO semantics (pycocotools ``COCOeval``, bbox, area "all"): per image and class the 100
best-scoring detections; per class and IoU threshold (0.50:0.05:0.95) greedy matching in score
order, each detection taking the unmatched ground truth of highest IoU >= threshold; precision made
monotone (the envelope) and read at 101 recall points with a step (no interpolation between
points); classes without ground truth are left out of the mean.

The YOLOR formula (``--metric yolor``) is the official ``test.py``: each prediction matched to its
best ground truth at IoU > 0.5, then scored at every threshold with that IoU, and AP from a
101-point ``np.interp`` + trapezoid of the envelope with a (recall 1, precision 0) end point. It
reads higher than COCO on the same detections, so it is kept only to compare with old runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
COCO_MAX_DETS = 100
CONFIDENCE_GRID = np.linspace(0, 1, 1000)  # where P, R and F1 curves are sampled
YOLOR_SCORE_FOR_PR = 0.1  # the official test.py reports P and R at this score
EPS = 1e-16


@dataclass
class ImageDetections:
    """Predictions and ground truth of one image, boxes as xyxy pixels in the same image."""

    boxes: np.ndarray  # (n, 4)
    scores: np.ndarray  # (n,)
    classes: np.ndarray  # (n,) int
    gt_boxes: np.ndarray  # (m, 4)
    gt_classes: np.ndarray  # (m,) int


@dataclass
class ClassMetrics:
    cls: int
    images: int
    instances: int
    precision: float | None
    recall: float | None
    map50: float | None
    map: float | None


@dataclass
class Metrics:
    precision: float
    recall: float
    f1: float
    map50: float
    map: float
    per_class: list[ClassMetrics]
    metric: str
    # Curves for plots, one row per evaluated class: sampled on CONFIDENCE_GRID (p, r, f1) and on
    # RECALL_POINTS (precision at IoU 0.5).
    curve_classes: list[int] = field(default_factory=list)
    p_curve: np.ndarray = field(default_factory=lambda: np.zeros((0, len(CONFIDENCE_GRID))))
    r_curve: np.ndarray = field(default_factory=lambda: np.zeros((0, len(CONFIDENCE_GRID))))
    f1_curve: np.ndarray = field(default_factory=lambda: np.zeros((0, len(CONFIDENCE_GRID))))
    pr_curve: np.ndarray = field(default_factory=lambda: np.zeros((0, len(RECALL_POINTS))))

    @property
    def fitness(self) -> float:
        """How YOLOR ranks checkpoints: 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95."""
        return 0.1 * self.map50 + 0.9 * self.map


def _iou(boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    if not len(boxes) or not len(gt_boxes):
        return np.zeros((len(boxes), len(gt_boxes)))
    return box_iou(
        torch.from_numpy(np.asarray(boxes, dtype=np.float64)), torch.from_numpy(np.asarray(gt_boxes, dtype=np.float64))
    ).numpy()


def box_iou_numpy(boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """IoU of xyxy ``boxes`` (n, 4) with ``gt_boxes`` (m, 4) as an (n, m) array (empty sides allowed)."""
    return _iou(boxes, gt_boxes)


def _class_counts(images: list[ImageDetections], nc: int) -> tuple[np.ndarray, np.ndarray]:
    instances = np.zeros(nc, dtype=int)
    images_with = np.zeros(nc, dtype=int)
    for image in images:
        classes = image.gt_classes.astype(int)
        instances += np.bincount(classes, minlength=nc)[:nc]
        images_with[np.unique(classes)] += 1
    return instances, images_with


# ---- COCO -------------------------------------------------------------------------------------

MATCH_CHUNK_IMAGES = 256  # images matched together; bounds memory by the most crowded image of a chunk


def _coco_match(images: list[ImageDetections]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Greedy COCO matching, a chunk of images at a time (matching never crosses images).

    Returns, for the kept detections: true-positive flags (n, T), scores, classes and a sort key
    (image index, rank) that reproduces pycocotools' concatenation order.
    """
    parts = [
        _coco_match_chunk(images[start : start + MATCH_CHUNK_IMAGES], start)
        for start in range(0, len(images), MATCH_CHUNK_IMAGES)
    ]
    if not parts:
        empty = np.zeros(0)
        return np.zeros((0, len(IOU_THRESHOLDS)), dtype=bool), empty, empty.astype(int), empty.astype(int)
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))  # type: ignore[return-value]


def _coco_match_chunk(
    images: list[ImageDetections], offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All classes and thresholds of these images at once, one score rank at a time."""
    det_iou, det_image, det_rank, det_score, det_class = [], [], [], [], []
    max_gt = max((len(image.gt_classes) for image in images), default=0)
    for index, image in enumerate(images):
        scores = np.asarray(image.scores, dtype=np.float64)
        classes = np.asarray(image.classes).astype(int)
        order = np.lexsort((-scores, classes))  # by class, then score (stable, like a mergesort)
        classes, scores = classes[order], scores[order]
        starts = np.searchsorted(classes, classes, side="left")
        rank = np.arange(len(classes)) - starts
        keep = rank < COCO_MAX_DETS
        order, classes, scores, rank = order[keep], classes[keep], scores[keep], rank[keep]
        iou = np.full((len(order), max_gt), -1.0)
        if len(order) and len(image.gt_classes):
            raw = _iou(np.asarray(image.boxes)[order], image.gt_boxes)
            same_class = classes[:, None] == image.gt_classes.astype(int)[None, :]
            iou[:, : raw.shape[1]] = np.where(same_class, raw, -1.0)
        det_iou.append(iou)
        det_image.append(np.full(len(order), index))
        det_rank.append(rank)
        det_score.append(scores)
        det_class.append(classes)
    if not det_iou or not sum(len(r) for r in det_rank):
        empty = np.zeros(0)
        return np.zeros((0, len(IOU_THRESHOLDS)), dtype=bool), empty, empty.astype(int), empty.astype(int)
    iou = np.concatenate(det_iou)
    image_of = np.concatenate(det_image)
    rank = np.concatenate(det_rank)
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)  # as pycocotools
    matched = np.zeros((len(images), len(thresholds), max_gt), dtype=bool)
    tp = np.zeros((len(iou), len(thresholds)), dtype=bool)
    steps = int(rank.max()) + 1 if len(rank) and max_gt else 0  # without ground truth nothing matches
    for step in range(steps):
        active = np.nonzero(rank == step)[0]  # one detection per (image, class): they never compete
        candidates = iou[active][:, None, :]  # (k, 1, G)
        valid = (candidates >= thresholds[None, :, None]) & ~matched[image_of[active]]
        scored = np.where(valid, candidates, -np.inf)
        # pycocotools keeps the last of equal IoUs: take argmax over the reversed gt axis.
        best = max_gt - 1 - np.argmax(scored[:, :, ::-1], axis=2)
        hit = valid.any(axis=2)
        rows, cols = np.nonzero(hit)
        matched[image_of[active][rows], cols, best[rows, cols]] = True
        tp[active] = hit
    return tp, np.concatenate(det_score), np.concatenate(det_class), (image_of + offset) * (COCO_MAX_DETS + 1) + rank


def _envelope_at_recalls(tp: np.ndarray, n_gt: int) -> np.ndarray:
    """AP per threshold (T,) and precision at RECALL_POINTS (T, R) from sorted TP flags (n, T)."""
    tps = np.cumsum(tp, axis=0, dtype=np.float64)
    fps = np.cumsum(~tp, axis=0, dtype=np.float64)
    result = np.zeros((tp.shape[1], len(RECALL_POINTS)))
    for t in range(tp.shape[1]):
        recall = tps[:, t] / n_gt
        precision = tps[:, t] / (tps[:, t] + fps[:, t] + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        found = np.searchsorted(recall, RECALL_POINTS, side="left")
        inside = found < len(recall)
        result[t, inside] = precision[found[inside]]
    return result


def average_precision(tp: np.ndarray, n_gt: int) -> float:
    """COCO AP (the envelope read at 101 recall points) of one class's detections in score order,
    ``tp`` (n,) their true-positive flags, ``n_gt`` > 0 its objects."""
    return float(_envelope_at_recalls(np.asarray(tp, dtype=bool).reshape(-1, 1), n_gt)[0].mean())


def _pr_curves(tp50: np.ndarray, scores: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each confidence of CONFIDENCE_GRID (sorted detections, IoU 0.5)."""
    if not len(scores):
        return np.zeros(len(CONFIDENCE_GRID)), np.zeros(len(CONFIDENCE_GRID))
    tpc = np.cumsum(tp50)
    fpc = np.cumsum(~tp50)
    recall = tpc / (n_gt + EPS)
    precision = tpc / (tpc + fpc)
    # Scores decrease along the list: interpolate on negated axes so xp is increasing.
    return (
        np.interp(-CONFIDENCE_GRID, -scores, precision, left=1),
        np.interp(-CONFIDENCE_GRID, -scores, recall, left=0),
    )


def coco_metrics(images: list[ImageDetections], nc: int) -> Metrics:
    tp, scores, classes, order_key = _coco_match(images)
    instances, images_with = _class_counts(images, nc)
    per_class: list[ClassMetrics] = []
    curve_classes, p_rows, r_rows, pr_rows, ap_rows = [], [], [], [], []
    for cls in range(nc):
        if instances[cls] == 0:
            per_class.append(ClassMetrics(cls, int(images_with[cls]), 0, None, None, None, None))
            continue
        mine = np.nonzero(classes == cls)[0]
        mine = mine[np.argsort(order_key[mine], kind="stable")]
        mine = mine[np.argsort(-scores[mine], kind="mergesort")]
        at_recalls = (
            _envelope_at_recalls(tp[mine], int(instances[cls]))
            if len(mine)
            else np.zeros((len(IOU_THRESHOLDS), len(RECALL_POINTS)))
        )
        ap = at_recalls.mean(axis=1)
        p, r = _pr_curves(tp[mine, 0], scores[mine], int(instances[cls]))
        curve_classes.append(cls)
        p_rows.append(p)
        r_rows.append(r)
        pr_rows.append(at_recalls[0])
        ap_rows.append(ap)
        per_class.append(
            ClassMetrics(cls, int(images_with[cls]), int(instances[cls]), None, None, float(ap[0]), float(ap.mean()))
        )
    return _finish(per_class, curve_classes, p_rows, r_rows, pr_rows, ap_rows, "coco")


def _finish(
    per_class: list[ClassMetrics],
    curve_classes: list[int],
    p_rows: list[np.ndarray],
    r_rows: list[np.ndarray],
    pr_rows: list[np.ndarray],
    ap_rows: list[np.ndarray],
    metric: str,
    fixed_pr: tuple[list[float], list[float]] | None = None,
) -> Metrics:
    """Means over classes with ground truth. P and R per class come from ``fixed_pr`` when given,
    else from the confidence where the mean F1 over classes is highest."""
    if not curve_classes:
        return Metrics(0.0, 0.0, 0.0, 0.0, 0.0, per_class, metric)
    p_curve, r_curve = np.stack(p_rows), np.stack(r_rows)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + EPS)
    aps = np.stack(ap_rows)
    column = int(f1_curve.mean(0).argmax())
    p_at, r_at = fixed_pr if fixed_pr is not None else (p_curve[:, column].tolist(), r_curve[:, column].tolist())
    for row, cls in enumerate(curve_classes):
        per_class[cls].precision, per_class[cls].recall = float(p_at[row]), float(r_at[row])
    precision, recall = float(np.mean(p_at)), float(np.mean(r_at))
    return Metrics(
        precision=precision,
        recall=recall,
        f1=2 * precision * recall / (precision + recall + EPS),
        map50=float(aps[:, 0].mean()),
        map=float(aps.mean()),
        per_class=per_class,
        metric=metric,
        curve_classes=curve_classes,
        p_curve=p_curve,
        r_curve=r_curve,
        f1_curve=f1_curve,
        pr_curve=np.stack(pr_rows),
    )


# ---- the official YOLOR formula ------------------------------------------------------------------


def _yolor_correct(image: ImageDetections) -> np.ndarray:
    """test.py's matching: best ground truth per prediction at IoU > 0.5, first come first served."""
    order = np.argsort(-np.asarray(image.scores), kind="stable")
    classes = np.asarray(image.classes).astype(int)[order]
    correct = np.zeros((len(order), len(IOU_THRESHOLDS)), dtype=bool)
    gt_classes = image.gt_classes.astype(int)
    detected: set[int] = set()
    for cls in np.unique(gt_classes):
        gt_index = np.nonzero(gt_classes == cls)[0]
        pred_index = np.nonzero(classes == cls)[0]
        if not len(pred_index):
            continue
        ious = _iou(np.asarray(image.boxes)[order][pred_index], image.gt_boxes[gt_index])
        best, which = ious.max(1), ious.argmax(1)
        for j in np.nonzero(best > IOU_THRESHOLDS[0])[0]:
            target = int(gt_index[which[j]])
            if target not in detected:
                detected.add(target)
                correct[pred_index[j]] = best[j] > IOU_THRESHOLDS
                if len(detected) == len(gt_classes):
                    break
    unsorted = np.zeros_like(correct)
    unsorted[order] = correct
    return unsorted


def _yolor_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray]:
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    curve = np.interp(RECALL_POINTS, mrec, mpre)
    trapezoid = float(np.sum((curve[1:] + curve[:-1]) / 2 * np.diff(RECALL_POINTS)))  # np.trapz, any numpy
    return trapezoid, curve


def yolor_metrics(images: list[ImageDetections], nc: int) -> Metrics:
    correct = np.concatenate([_yolor_correct(i) for i in images]) if images else np.zeros((0, 10), bool)
    scores = np.concatenate([np.asarray(i.scores, dtype=np.float64) for i in images]) if images else np.zeros(0)
    classes = np.concatenate([np.asarray(i.classes).astype(int) for i in images]) if images else np.zeros(0, int)
    order = np.argsort(-scores)
    correct, scores, classes = correct[order], scores[order], classes[order]
    instances, images_with = _class_counts(images, nc)
    per_class: list[ClassMetrics] = []
    curve_classes, p_rows, r_rows, pr_rows, ap_rows = [], [], [], [], []
    p_at, r_at = [], []
    for cls in range(nc):
        if instances[cls] == 0:
            per_class.append(ClassMetrics(cls, int(images_with[cls]), 0, None, None, None, None))
            continue
        mine = classes == cls
        ap = np.zeros(len(IOU_THRESHOLDS))
        pr = np.zeros(len(RECALL_POINTS))
        p_at.append(0.0)
        r_at.append(0.0)
        if mine.any():
            tpc = correct[mine].cumsum(0)
            fpc = (~correct[mine]).cumsum(0)
            recall = tpc / (instances[cls] + EPS)
            precision = tpc / (tpc + fpc)
            # test.py reads P and R at score 0.1 with numpy's default ends.
            p_at[-1] = float(np.interp(-YOLOR_SCORE_FOR_PR, -scores[mine], precision[:, 0]))
            r_at[-1] = float(np.interp(-YOLOR_SCORE_FOR_PR, -scores[mine], recall[:, 0]))
            for t in range(len(IOU_THRESHOLDS)):
                ap[t], curve = _yolor_ap(recall[:, t], precision[:, t])
                if t == 0:
                    pr = curve
        p, r = _pr_curves(correct[mine, 0], scores[mine], int(instances[cls]))
        curve_classes.append(cls)
        p_rows.append(p)
        r_rows.append(r)
        pr_rows.append(pr)
        ap_rows.append(ap)
        per_class.append(
            ClassMetrics(cls, int(images_with[cls]), int(instances[cls]), None, None, float(ap[0]), float(ap.mean()))
        )
    return _finish(per_class, curve_classes, p_rows, r_rows, pr_rows, ap_rows, "yolor", fixed_pr=(p_at, r_at))


def evaluate_detections(images: list[ImageDetections], nc: int, metric: str = "coco") -> Metrics:
    if metric == "coco":
        return coco_metrics(images, nc)
    if metric == "yolor":
        return yolor_metrics(images, nc)
    raise ValueError(f"unknown metric {metric!r}")


# ---- confusion matrix ----------------------------------------------------------------------------

CONFUSION_CONF = 0.25
CONFUSION_IOU = 0.45


def confusion_matrix(images: list[ImageDetections], nc: int) -> np.ndarray:
    """(nc + 1) x (nc + 1) counts, rows = predicted class, columns = true class; the last row and
    column are background (missed objects, false detections). One-to-one matching by IoU."""
    matrix = np.zeros((nc + 1, nc + 1), dtype=int)
    for image in images:
        keep = np.asarray(image.scores) > CONFUSION_CONF
        boxes, classes = np.asarray(image.boxes)[keep], np.asarray(image.classes).astype(int)[keep]
        gt_classes = image.gt_classes.astype(int)
        iou = _iou(boxes, image.gt_boxes)
        pairs = np.argwhere(iou > CONFUSION_IOU)
        if len(pairs):
            pairs = pairs[np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")]
            pairs = pairs[np.unique(pairs[:, 1], return_index=True)[1]]
            pairs = pairs[np.unique(pairs[:, 0], return_index=True)[1]]
        for det, gt in pairs:
            matrix[classes[det], gt_classes[gt]] += 1
        matched_gt, matched_det = set(pairs[:, 1].tolist()), set(pairs[:, 0].tolist())
        for gt, cls in enumerate(gt_classes):
            if gt not in matched_gt:
                matrix[nc, cls] += 1
        for det, cls in enumerate(classes):
            if det not in matched_det:
                matrix[cls, nc] += 1
    return matrix
