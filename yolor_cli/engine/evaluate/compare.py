"""Model against model on one split (``yolor eval --compare``, and the changes ``prune auto`` and
``export --int8`` print): mAP, per-class AP, each error type's dAP, and the images that changed most.

An image's detections are read as a person would see them: those scoring at least ``COMPARE_CONF``
(the confusion matrix's threshold), matched to objects of their class at IoU >= ``COMPARE_IOU`` (TIDE's
greedy matching, best score first). Its score is F1 = 2 TP / (2 TP + FP + FN), 1 for an image with no
object and no detection. An image *changed* when its TP, FP or FN count differs between the two; the
change is F1(B) - F1(A), and the list runs from the largest loss to the largest gain (ties: the larger
count change first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from yolor_cli.engine.evaluate.errors import ERROR_TYPES, TP, ErrorBreakdown, match_errors
from yolor_cli.engine.evaluate.metrics import CONFUSION_CONF, ImageDetections, Metrics

COMPARE_CONF = CONFUSION_CONF  # the detections a user would keep; the confusion matrix reads them too
COMPARE_IOU = 0.5
COMPARE_MAX_IMAGES = 100  # changed images kept in compare.json, worst first
LARGEST_CHANGES = 3  # what prune auto and export --int8 show after their tables


@dataclass(frozen=True)
class ImageScore:
    tp: int
    fp: int
    fn: int

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0

    def payload(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "f1": round(self.f1, 5)}


@dataclass(frozen=True)
class ImageChange:
    """One image's detections under model A and model B (see the module docstring)."""

    image: str
    a: ImageScore
    b: ImageScore

    @property
    def change(self) -> float:
        return self.b.f1 - self.a.f1

    @property
    def counts_changed(self) -> int:
        return abs(self.b.tp - self.a.tp) + abs(self.b.fp - self.a.fp) + abs(self.b.fn - self.a.fn)

    def payload(self) -> dict[str, Any]:
        return {"image": self.image, "a": self.a.payload(), "b": self.b.payload(), "change": round(self.change, 5)}

    @classmethod
    def from_payload(cls, values: dict[str, Any]) -> ImageChange:
        """Back from :meth:`payload` (a run's saved state)."""

        def score(part: dict[str, Any]) -> ImageScore:
            return ImageScore(int(part["tp"]), int(part["fp"]), int(part["fn"]))

        return cls(str(values["image"]), score(values["a"]), score(values["b"]))

    def describe(self) -> str:
        """One line for a terminal: the image, its F1 change and what moved."""
        parts = [
            f"{name} {getattr(self.a, name)}->{getattr(self.b, name)}"
            for name in ("tp", "fp", "fn")
            if getattr(self.a, name) != getattr(self.b, name)
        ]
        return f"{self.image}: F1 {self.a.f1:.2f} -> {self.b.f1:.2f} ({', '.join(parts).upper()})"


def image_scores(images: list[ImageDetections]) -> list[ImageScore]:
    """TP, FP and FN of each image at ``COMPARE_CONF`` and ``COMPARE_IOU``. Greedy matching in score
    order gives the detections above a score the same matches as it gives all of them, so the kept ones
    are matched together with the rest and then counted."""
    matched = match_errors(images, np.array([COMPARE_IOU]))
    kept = matched.score >= COMPARE_CONF
    tp = np.bincount(matched.image[kept & (matched.outcome[:, 0] == TP)], minlength=len(images))
    fp = np.bincount(matched.image[kept & (matched.outcome[:, 0] != TP)], minlength=len(images))
    objects = np.array([len(image.gt_classes) for image in images], dtype=int)
    return [ImageScore(int(t), int(f), int(n - t)) for t, f, n in zip(tp, fp, objects)]


def image_changes(
    a: list[ImageDetections], a_names: list[str], b: list[ImageDetections], b_names: list[str]
) -> list[ImageChange]:
    """The images whose detections changed from ``a`` to ``b`` (matched by name), worst first."""
    scores_b = dict(zip(b_names, image_scores(b)))
    changes = [
        ImageChange(name, score, scores_b[name])
        for name, score in zip(a_names, image_scores(a))
        if name in scores_b and score != scores_b[name]
    ]
    return sorted(changes, key=lambda c: (c.change, -c.counts_changed, c.image))


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


@dataclass(frozen=True)
class Comparison:
    """Two evaluations of one split: ``a`` the model evaluated, ``b`` the one given to ``--compare``."""

    a_label: str
    b_label: str
    a: Metrics
    b: Metrics
    a_errors: ErrorBreakdown
    b_errors: ErrorBreakdown
    names: list[str]
    changes: list[ImageChange] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """The ``compare`` object of ``--json`` and compare.json."""
        per_class = []
        for ca, cb in zip(self.a.per_class, self.b.per_class):
            if not ca.instances:
                continue
            per_class.append(
                {
                    "class": self.names[ca.cls],
                    "instances": ca.instances,
                    "a": {"map50": ca.map50, "map": ca.map},
                    "b": {"map50": cb.map50, "map": cb.map},
                    "delta": {"map50": _delta(ca.map50, cb.map50), "map": _delta(ca.map, cb.map)},
                }
            )
        errors = {}
        for kind in ERROR_TYPES:
            fa, fb = self.a_errors.overall, self.b_errors.overall
            errors[kind] = {
                "a": {"map50": fa.map50[kind], "map": fa.map[kind]},
                "b": {"map50": fb.map50[kind], "map": fb.map[kind]},
                "delta": {"map50": fb.map50[kind] - fa.map50[kind], "map": fb.map[kind] - fa.map[kind]},
            }
        return {
            "a": {"model": self.a_label, "map50": self.a.map50, "map": self.a.map},
            "b": {"model": self.b_label, "map50": self.b.map50, "map": self.b.map},
            "delta": {"map50": self.b.map50 - self.a.map50, "map": self.b.map - self.a.map},
            "per_class": per_class,
            "errors": errors,
            "errors_a": self.a_errors.payload(self.names),
            "errors_b": self.b_errors.payload(self.names),
            "images": [change.payload() for change in self.changes[:COMPARE_MAX_IMAGES]],
            "images_changed": len(self.changes),
            "image_definition": {"conf": COMPARE_CONF, "iou": COMPARE_IOU, "score": "F1 per image"},
        }
