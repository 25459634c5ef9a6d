"""Why a detector loses mAP: TIDE's six error types (Bolya et al., ECCV 2020) and the dAP of each.

Definitions (those of the reference implementation, tidecv, written anew on our arrays):

- Per image, the ``TIDE_MAX_DETS`` best-scoring detections over all classes are kept (COCO keeps 100 per
  class; on images with more detections the breakdown's base mAP can read below eval's mAP).
- Matching at a foreground IoU ``t``: detections in score order, each takes the unmatched ground truth of
  its class with the highest IoU (the first on ties) when that IoU is ``>= t``: a true positive.
- Every other detection gets the first type that fits, in this order (``b`` = ``BACKGROUND_IOU``):
  ``loc``: its best same-class IoU (any ground truth) lies in ``[b, t]``;
  ``cls``: its best IoU with an object of another class is ``>= t``;
  ``dupe``: its best IoU with an already matched object of its class is ``>= t``;
  ``bkg``: its best IoU with any object is ``<= b`` (every detection of an image without objects);
  ``both``: anything else (wrong class and poorly placed).
  ``missed``: an object no detection matched and no ``cls``/``loc`` detection points at.
- Fixing a type (the oracle): ``cls``/``loc`` detections become true positives of the object they point
  at (``cls`` takes that object's class), one per object: the best-scoring one when the object is
  unmatched, none when it is matched; the rest are removed. ``dupe``, ``bkg`` and ``both`` detections are
  removed. ``missed`` objects are taken out of the class's object count.
- dAP of a type = max(mAP with that type fixed - mAP, 0), each type fixed alone against the original.
  A class whose every object is taken out and has no detection left drops out of the mean (as tidecv).

The mAP50 figures are TIDE's default (``t`` = 0.5, ``b`` = 0.1). The mAP50-95 figures repeat the whole
breakdown at each COCO threshold ``t`` in 0.50:0.05:0.95 (``b`` stays 0.1) and average the ten dAPs, so
each is the mean of what tidecv reports with ``pos_threshold=t``. The mean is over the classes with
objects in the split (as eval's mAP; tidecv also counts classes that only have detections, at AP 0).
Counts are at IoU 0.5. Ties of equal score are broken by image, then rank, as eval's COCO mAP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from yolor_cli.engine.evaluate.metrics import IOU_THRESHOLDS, ImageDetections, average_precision, box_iou_numpy

ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "missed")
ERROR_LABELS = {
    "cls": "classification",
    "loc": "localisation",
    "both": "class and box",
    "dupe": "duplicate",
    "bkg": "background",
    "missed": "missed",
}
BACKGROUND_IOU = 0.1  # TIDE's background threshold: below it a detection covers no object at all
TIDE_MAX_DETS = 100  # TIDE keeps each image's 100 best detections, over all its classes
MATCH_CHUNK_IMAGES = 256  # images matched together; bounds memory by the most crowded image of a chunk

# Detection outcome codes, per detection and threshold.
TP, CLS, LOC, BOTH, DUPE, BKG = 0, 1, 2, 3, 4, 5
_CODE = {"cls": CLS, "loc": LOC, "both": BOTH, "dupe": DUPE, "bkg": BKG}


@dataclass
class Matched:
    """Every kept detection of a split at every threshold, and every object's fate.

    Detection arrays are (n,) or (n, T); object arrays (m,) or (m, T); images are indexes into the
    scored list."""

    image: np.ndarray  # (n,) image index
    rank: np.ndarray  # (n,) place in its image's score order
    score: np.ndarray  # (n,)
    cls: np.ndarray  # (n,) predicted class
    outcome: np.ndarray  # (n, T) TP, CLS, LOC, BOTH, DUPE, BKG
    fixes: np.ndarray  # (n, T) bool: a cls/loc detection that turns into a true positive when fixed
    target_cls: np.ndarray  # (n, T) class of the object a cls/loc detection points at (-1: none)
    gt_image: np.ndarray  # (m,) image index of each object
    gt_cls: np.ndarray  # (m,)
    missed: np.ndarray  # (m, T) bool
    thresholds: np.ndarray  # (T,)


def _chunk(images: list[ImageDetections], offset: int, thresholds: np.ndarray, max_dets: int) -> Matched:
    """Match and type the detections of a few images, all thresholds at once, one score rank a step."""
    t_count = len(thresholds)
    max_gt = max((len(image.gt_classes) for image in images), default=0)
    ious, det_image, det_rank, det_score, det_cls = [], [], [], [], []
    gt_cls_pad = np.full((len(images), max_gt), -1)
    for index, image in enumerate(images):
        scores = np.asarray(image.scores, dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[:max_dets]
        classes = np.asarray(image.classes).astype(int)[order]
        gt_classes = np.asarray(image.gt_classes).astype(int)
        gt_cls_pad[index, : len(gt_classes)] = gt_classes
        iou = np.zeros((len(order), max_gt))
        iou[:, : len(gt_classes)] = box_iou_numpy(np.asarray(image.boxes).reshape(-1, 4)[order], image.gt_boxes)
        ious.append(iou)
        det_image.append(np.full(len(order), index))
        det_rank.append(np.arange(len(order)))
        det_score.append(scores[order])
        det_cls.append(classes)
    iou = np.concatenate(ious) if ious else np.zeros((0, max_gt))
    image_of = np.concatenate(det_image).astype(int) if det_image else np.zeros(0, int)
    rank = np.concatenate(det_rank).astype(int) if det_rank else np.zeros(0, int)
    score = np.concatenate(det_score) if det_score else np.zeros(0)
    cls = np.concatenate(det_cls).astype(int) if det_cls else np.zeros(0, int)
    valid = gt_cls_pad[image_of] >= 0  # (n, G)
    same = (cls[:, None] == gt_cls_pad[image_of]) & valid
    cls_iou = np.where(same, iou, 0.0)
    other_iou = np.where(valid & ~same, iou, 0.0)

    matched = np.zeros((len(images), t_count, max_gt), dtype=bool)
    tp = np.zeros((len(iou), t_count), dtype=bool)
    for step in range(int(rank.max()) + 1 if len(rank) and max_gt else 0):
        active = np.nonzero(rank == step)[0]  # one detection per image: images never compete
        buffer = np.where(matched[image_of[active]], 0.0, cls_iou[active][:, None, :])  # (k, T, G)
        best = np.argmax(buffer, axis=2)  # the first of equal IoUs, as tidecv's argmax
        value = np.take_along_axis(buffer, best[:, :, None], axis=2)[:, :, 0]
        hit = value >= thresholds[None, :]
        rows, cols = np.nonzero(hit)
        matched[image_of[active][rows], cols, best[rows, cols]] = True
        tp[active] = hit

    has_gt = valid.any(axis=1) if max_gt else np.zeros(len(iou), dtype=bool)
    t = thresholds[None, :]
    same_best = cls_iou.argmax(axis=1) if max_gt else np.zeros(len(iou), int)
    same_max = cls_iou.max(axis=1, initial=0.0)[:, None]
    other_best = other_iou.argmax(axis=1) if max_gt else np.zeros(len(iou), int)
    other_max = other_iou.max(axis=1, initial=0.0)[:, None]
    used_same_max = np.where(matched[image_of], cls_iou[:, None, :], 0.0).max(axis=2, initial=0.0)  # (n, T)
    any_max = np.where(valid, iou, 0.0).max(axis=1, initial=0.0)[:, None]
    fp = ~tp
    loc = fp & has_gt[:, None] & (same_max >= BACKGROUND_IOU) & (same_max <= t)
    wrong_cls = fp & has_gt[:, None] & ~loc & (other_max >= t)
    rest = fp & ~loc & ~wrong_cls
    dupe = rest & has_gt[:, None] & (used_same_max >= t)
    bkg = rest & ~dupe & (~has_gt[:, None] | (any_max <= BACKGROUND_IOU))
    outcome = np.full(tp.shape, BOTH)
    outcome[tp] = TP
    outcome[loc] = LOC
    outcome[wrong_cls] = CLS
    outcome[dupe] = DUPE
    outcome[bkg] = BKG

    # Which object each cls/loc detection points at; the best-scoring one of an unmatched object is fixed.
    target = np.where(loc, same_best[:, None], np.where(wrong_cls, other_best[:, None], -1))  # (n, T)
    pointing = target >= 0
    target_matched = np.zeros_like(pointing)
    rows, cols = np.nonzero(pointing)
    target_matched[rows, cols] = matched[image_of[rows], cols, target[rows, cols]]
    candidate = pointing & ~target_matched
    fixes = np.zeros_like(pointing)
    usable = np.zeros_like(matched)
    rows, cols = np.nonzero(candidate)
    if len(rows):
        # Rows come in detection order, i.e. image then rank: the first per (image, t, object) wins.
        keys = np.stack([image_of[rows], cols, target[rows, cols]], axis=1)
        _, first = np.unique(keys, axis=0, return_index=True)
        fixes[rows[first], cols[first]] = True
        usable[keys[:, 0], keys[:, 1], keys[:, 2]] = True
    target_cls = np.where(target >= 0, gt_cls_pad[image_of][np.arange(len(iou))[:, None], np.maximum(target, 0)], -1)

    gt_image, gt_slot = np.nonzero(gt_cls_pad >= 0)
    missed = ~matched[gt_image, :, gt_slot] & ~usable[gt_image, :, gt_slot]  # (m, T)
    return Matched(
        image=image_of + offset,
        rank=rank,
        score=score,
        cls=cls,
        outcome=outcome,
        fixes=fixes,
        target_cls=target_cls,
        gt_image=gt_image + offset,
        gt_cls=gt_cls_pad[gt_image, gt_slot],
        missed=missed,
        thresholds=thresholds,
    )


def match_errors(
    images: list[ImageDetections], thresholds: np.ndarray = IOU_THRESHOLDS, max_dets: int = TIDE_MAX_DETS
) -> Matched:
    """TIDE's matching and error types for a split, a chunk of images at a time."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    parts = [
        _chunk(images[start : start + MATCH_CHUNK_IMAGES], start, thresholds, max_dets)
        for start in range(0, len(images), MATCH_CHUNK_IMAGES)
    ] or [_chunk([], 0, thresholds, max_dets)]
    fields = {}
    for name in Matched.__dataclass_fields__:
        if name == "thresholds":
            continue
        arrays = [getattr(part, name) for part in parts]
        fields[name] = np.concatenate(arrays) if arrays[0].ndim == 1 else np.concatenate(arrays, axis=0)
    return Matched(thresholds=thresholds, **fields)


@dataclass(frozen=True)
class ErrorFigures:
    """One scope's breakdown (all classes, or one): dAP per type on mAP50 and mAP50-95, the base
    figures they are gains over, and how many detections (objects, for missed) had each type at IoU 0.5."""

    map50: dict[str, float]
    map: dict[str, float]
    counts: dict[str, int]
    base_map50: float
    base_map: float

    def payload(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            kind: {"map50": self.map50[kind], "map": self.map[kind], "count": self.counts[kind]} for kind in ERROR_TYPES
        }
        figures["base"] = {"map50": self.base_map50, "map": self.base_map}
        return figures


@dataclass(frozen=True)
class ErrorBreakdown:
    """The whole split (``overall``) and each class with objects in it (``per_class``: class -> figures)."""

    overall: ErrorFigures
    per_class: dict[int, ErrorFigures] = field(default_factory=dict)

    def payload(self, names: list[str]) -> dict[str, Any]:
        """The ``errors`` object of ``--json`` and errors.json."""
        return {
            **self.overall.payload(),
            "per_class": [{"class": names[c], **figures.payload()} for c, figures in self.per_class.items()],
            "definition": {
                "method": "TIDE (Bolya et al., ECCV 2020), each error type fixed alone",
                "background_iou": BACKGROUND_IOU,
                "map50_iou": float(IOU_THRESHOLDS[0]),
                "map_iou": [round(float(t), 2) for t in IOU_THRESHOLDS],
                "max_dets_per_image": TIDE_MAX_DETS,
            },
        }


def _class_aps(
    order: np.ndarray, cls: np.ndarray, keep: np.ndarray, tp: np.ndarray, n_gt: np.ndarray, classes: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """AP per class (from detections in ``order``) and whether each class still counts in the mean."""
    cls, keep, tp = cls[order], keep[order], tp[order]
    aps = np.zeros(len(classes))
    counts = np.ones(len(classes), dtype=bool)
    for i, c in enumerate(classes):
        mine = keep & (cls == c)
        if n_gt[c] <= 0:
            counts[i] = bool(mine.any())  # nothing left to find: in the mean only with detections (AP 0)
            aps[i] = 0.0 if counts[i] else 1.0
            continue
        aps[i] = average_precision(tp[mine], int(n_gt[c])) if mine.any() else 0.0
    return aps, counts


def error_breakdown(images: list[ImageDetections], nc: int, max_dets: int = TIDE_MAX_DETS) -> ErrorBreakdown:
    """TIDE's breakdown of ``images`` (see the module docstring) over ``nc`` classes."""
    matched = match_errors(images, IOU_THRESHOLDS, max_dets)
    n_gt = np.bincount(matched.gt_cls, minlength=nc)[:nc] if len(matched.gt_cls) else np.zeros(nc, int)
    classes = [c for c in range(nc) if n_gt[c] > 0]
    order = np.lexsort((matched.rank, matched.image, -matched.score))
    t_count = len(IOU_THRESHOLDS)
    base = np.zeros((t_count, len(classes)))
    fixed = {kind: np.zeros((t_count, len(classes))) for kind in ERROR_TYPES}
    overall_gain = {kind: np.zeros(t_count) for kind in ERROR_TYPES}
    everything = np.ones(len(matched.score), dtype=bool)
    for t in range(t_count):
        outcome = matched.outcome[:, t]
        tp = outcome == TP
        base[t], _ = _class_aps(order, matched.cls, everything, tp, n_gt, classes)
        base_mean = float(base[t].mean()) if classes else 0.0
        for kind in ERROR_TYPES:
            cls, keep, flags, counts_gt = matched.cls, everything, tp, n_gt
            if kind == "missed":
                missed = np.bincount(matched.gt_cls[matched.missed[:, t]], minlength=nc)[:nc]
                counts_gt = n_gt - missed
            else:
                mine = outcome == _CODE[kind]
                keep = ~mine | matched.fixes[:, t]
                flags = tp | (mine & matched.fixes[:, t])
                if kind == "cls":
                    cls = np.where(mine & matched.fixes[:, t], matched.target_cls[:, t], matched.cls)
            aps, counted = _class_aps(order, cls, keep, flags, counts_gt, classes)
            fixed[kind][t] = aps
            mean = float(aps[counted].mean()) if counted.any() else base_mean
            overall_gain[kind][t] = max(mean - base_mean, 0.0)
    counts = _counts(matched, nc)
    overall = ErrorFigures(
        map50={k: float(overall_gain[k][0]) for k in ERROR_TYPES},
        map={k: float(overall_gain[k].mean()) for k in ERROR_TYPES},
        counts={k: int(v.sum()) for k, v in counts.items()},
        base_map50=float(base[0].mean()) if classes else 0.0,
        base_map=float(base.mean()) if classes else 0.0,
    )
    per_class = {}
    for i, c in enumerate(classes):
        gains = {k: np.maximum(fixed[k][:, i] - base[:, i], 0.0) for k in ERROR_TYPES}
        per_class[c] = ErrorFigures(
            map50={k: float(g[0]) for k, g in gains.items()},
            map={k: float(g.mean()) for k, g in gains.items()},
            counts={k: int(v[c]) for k, v in counts.items()},
            base_map50=float(base[0, i]),
            base_map=float(base[:, i].mean()),
        )
    return ErrorBreakdown(overall=overall, per_class=per_class)


def _counts(matched: Matched, nc: int) -> dict[str, np.ndarray]:
    """Per class, how many detections (objects, for missed) had each type at IoU 0.5. A cls error counts
    against the predicted class."""
    outcome = matched.outcome[:, 0]
    counts = {kind: np.bincount(matched.cls[outcome == _CODE[kind]], minlength=nc)[:nc] for kind in _CODE}
    counts["missed"] = np.bincount(matched.gt_cls[matched.missed[:, 0]], minlength=nc)[:nc]
    return {kind: counts[kind] for kind in ERROR_TYPES}
