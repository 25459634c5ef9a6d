"""Knowledge distillation for ``yolor train --teacher T.pt``: the student also learns the teacher's outputs.

The main use is a pruned model trained back from the unpruned one it came from: the same cfg with
fewer channels inside, hence the same detection levels, grid cells and anchors. Distillation here is
on the outputs, so it compares the two models' raw head maps cell by cell and anchor by anchor; a
teacher whose classes or detection levels (count, strides, anchors) differ from the student's has no
such correspondence and is refused.

The term, per level, on the raw maps (bs, na, ny, nx, 5 + nc) of student ``s`` and teacher ``t``:

* objectness, on every cell: KL(Bernoulli(sigmoid(t)) || Bernoulli(sigmoid(s))), which is the BCE
  against the teacher's probability minus the teacher's own entropy;
* boxes and class scores, on the cells where the teacher's objectness probability is above
  :data:`CONFIDENT_OBJECTNESS` only (elsewhere the teacher's box and class are noise): the same KL
  per class, and a Huber (smooth L1) distance between the decoded boxes, x and y as offsets in grid
  cells (``sigmoid * 2 - 0.5``) and w and h in units of the cell's anchor (``(sigmoid * 2) ** 2``,
  the grid-unit size of :mod:`yolor_cli.engine.train.loss` divided by its anchor), so that a 10 %
  size error weighs the same at every level.

Each part is zero, with a zero gradient, when the student's maps equal the teacher's. The parts are
scaled as :class:`~yolor_cli.engine.train.loss.YolorLoss` scales its own (the hyp's box, obj and cls
gains, the per-level objectness balance, class terms only with more than one class, nc / 80 on the
class gain) and the sum is multiplied by the batch size as that loss is: a ``--distill-weight`` of 1
weighs matching the teacher like matching the labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn import functional

from yolor_cli.engine.config import Hyp
from yolor_cli.engine.errors import CheckpointError, YolorError
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.loading import load_model
from yolor_cli.engine.runtime import channels_last
from yolor_cli.engine.train.loss import COCO_CLASSES, LEVEL_BALANCE, OBJECTNESS_BOOST_FROM_4_LEVELS

# --distill-weight's default: the distillation term is added to the training loss with this factor.
DEFAULT_DISTILL_WEIGHT = 1.0
# Boxes and class scores are distilled only where the teacher's objectness probability is above this:
# the cells it calls an object at better than even odds. YOLOR trains objectness towards the IoU of the
# predicted box, so a trained teacher's positive cells sit around 0.6-0.9 and its background far below.
CONFIDENT_OBJECTNESS = 0.5
# The Huber loss's switch from quadratic to linear: box errors under a tenth of a cell (or of an
# anchor) are squared, so the gradient fades out as the student's box reaches the teacher's.
BOX_HUBER_BETA = 0.1


def check_distill_options(teacher: str | None, distill_weight: float | None) -> None:
    """``--distill-weight`` only with ``--teacher``, and above 0 (a weight of 0 is no teacher at all)."""
    if distill_weight is None:
        return
    if not teacher:
        raise YolorError(
            "--distill-weight is given without --teacher",
            hint="pass the model to distil from: --teacher runs/train/exp/weights/best.pt "
            "(a resumed run keeps its own teacher and weight)",
        )
    check_distill_weight(distill_weight)


def check_distill_weight(distill_weight: float) -> None:
    """A weight of 0 or below would switch the teacher off or push the student away from it."""
    if not math.isfinite(distill_weight):
        raise YolorError(
            f"--distill-weight {distill_weight} is not a finite number",
            hint=f"e.g. --distill-weight {DEFAULT_DISTILL_WEIGHT:g} (the default)",
        )
    if distill_weight <= 0:
        raise YolorError(
            f"--distill-weight {distill_weight} must be a number above 0",
            hint=f"e.g. --distill-weight {DEFAULT_DISTILL_WEIGHT:g} (the default)",
        )


def bernoulli_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of independent Bernoulli scores, element-wise: the BCE of the student
    against the teacher's probability minus the teacher's entropy. Written with log-sigmoids so that
    equal logits give exactly 0 (a BCE minus an entropy would leave rounding behind)."""
    p = teacher_logits.sigmoid()
    return p * (functional.logsigmoid(teacher_logits) - functional.logsigmoid(student_logits)) + (1 - p) * (
        functional.logsigmoid(-teacher_logits) - functional.logsigmoid(-student_logits)
    )


def _box(maps: torch.Tensor) -> torch.Tensor:
    """x, y offsets in grid cells and w, h in anchor units, decoded as the training loss decodes them."""
    y = maps[..., :4].sigmoid() * 2.0
    return torch.cat((y[..., :2] - 0.5, y[..., 2:4] ** 2), -1)


def _anchors(model: DarknetModel) -> list[list[list[float]]]:
    return [layer.anchors.tolist() for layer in model.yolo_layers]


def check_teacher(
    teacher: DarknetModel,
    teacher_names: Sequence[str] | None,
    student: DarknetModel,
    names: Sequence[str],
    source: str,
) -> None:
    """Refuse a teacher whose outputs do not line up with the student's: other classes (count or
    names; a checkpoint without names is compared by count), or other detection levels (their
    number, strides or anchors), since output distillation compares the same cells and anchors."""
    hint_classes = "distil from a model trained on the same data (the same classes in the same order)"
    if teacher.nc != len(names):
        raise YolorError(f"the teacher {source} has {teacher.nc} classes, the data {len(names)}", hint=hint_classes)
    if teacher_names is not None and list(teacher_names) != list(names):
        pairs = list(zip(teacher_names, names))
        differing = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
        where = (
            f"class {differing}: {pairs[differing][0]!r} in the teacher, {pairs[differing][1]!r} in the data"
            if differing is not None
            else f"{len(teacher_names)} names in the teacher, {len(names)} in the data"
        )
        raise YolorError(f"the teacher {source} names its classes otherwise than the data ({where})", hint=hint_classes)
    hint_levels = (
        "output distillation compares the same grid cells and anchors: the teacher must have the "
        "student's detection heads, e.g. the unpruned model a pruned student came from"
    )
    if len(teacher.yolo_layers) != len(student.yolo_layers):
        raise YolorError(
            f"the teacher {source} has {len(teacher.yolo_layers)} detection levels, the student "
            f"{len(student.yolo_layers)}",
            hint=hint_levels,
        )
    if teacher.strides != student.strides:
        raise YolorError(
            f"the teacher {source} has strides {[int(s) for s in teacher.strides]}, the student "
            f"{[int(s) for s in student.strides]}",
            hint=hint_levels,
        )
    for level, (ours, theirs) in enumerate(zip(_anchors(student), _anchors(teacher))):
        if ours != theirs:
            raise YolorError(
                f"the teacher {source} has other anchors than the student at level {level} "
                f"(stride {int(student.strides[level])}): {theirs} against {ours}",
                hint=hint_levels,
            )


class Distiller:
    """The teacher and the distillation term. The teacher is frozen: eval mode (BatchNorm on its
    running statistics), no gradients, BatchNorm folded into the convs since it never trains; the
    trainer runs it under the student's autocast and computes :meth:`loss` in fp32."""

    def __init__(
        self, teacher: DarknetModel, hyp: Hyp, *, weight: float = DEFAULT_DISTILL_WEIGHT, source: str = "teacher"
    ) -> None:
        check_distill_weight(weight)
        self.teacher = teacher.eval().fuse().requires_grad_(False)
        self.weight = weight
        self.source = source
        self.nc = teacher.nc
        levels = len(teacher.yolo_layers)  # 3 to 5: the model refuses other counts when it is built
        self.balance = LEVEL_BALANCE[levels]
        level_scale = 3 / levels
        # The gains of YolorLoss (hyp.box, hyp.obj, hyp.cls are what the recipe never changes).
        self.box_gain = hyp.box * level_scale
        self.obj_gain = hyp.obj * level_scale * (OBJECTNESS_BOOST_FROM_4_LEVELS if levels >= 4 else 1.0)
        self.cls_gain = hyp.cls * self.nc / COCO_CLASSES * level_scale

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        student: DarknetModel,
        names: Sequence[str],
        hyp: Hyp,
        weight: float = DEFAULT_DISTILL_WEIGHT,
        trust_pickle: bool = False,
    ) -> Distiller:
        """The teacher from a checkpoint (its EMA weights, through the loader every command uses),
        checked against the student and the data's class names before anything trains."""
        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"teacher weights not found: {path}", hint="--teacher takes a .pt that yolor wrote")
        try:
            loaded = load_model(weights=path, trust_pickle=trust_pickle)
        except YolorError as error:  # the loader's hints (--cfg, --trust-pickle) are about --weights
            raise CheckpointError(
                f"the teacher {path} cannot be loaded on its own: {error.message}",
                hint="--teacher takes a checkpoint that yolor wrote; an official or pickled file becomes "
                "one with `yolor export --weights FILE --cfg C --format pt` (add --trust-pickle for a pickle)",
            ) from None
        check_teacher(loaded.model, loaded.names, student, names, str(path))
        return cls(loaded.model, hyp, weight=weight, source=str(path))

    def to(self, device: torch.device) -> Distiller:
        """On the trainer's device, channels-last as the student (the images the trainer feeds are)."""
        channels_last(self.teacher, device)
        return self

    @torch.no_grad()
    def teacher_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The teacher's raw maps of ``images`` (the student's batch, after multi-scale resizing), fp32.
        The caller's autocast applies, so the teacher runs in the student's precision."""
        _, raw = self.teacher(images)
        return [p.float() for p in raw]

    def loss(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The distillation term of fp32 raw maps: (sum scaled by the batch size as YolorLoss's,
        detached [box, obj, cls, total] per image). Not yet multiplied by :attr:`weight`."""
        zero = torch.zeros(1, device=student[0].device)
        box, obj, cls = zero.clone(), zero.clone(), zero.clone()
        for level, (s, t) in enumerate(zip(student, teacher)):
            t = t.detach()
            obj = obj + bernoulli_kl(s[..., 4], t[..., 4]).mean() * self.balance[level]
            confident = t[..., 4].sigmoid() > CONFIDENT_OBJECTNESS
            if not confident.any():
                continue
            s_cells, t_cells = s[confident], t[confident]
            distance = functional.smooth_l1_loss(_box(s_cells), _box(t_cells), reduction="none", beta=BOX_HUBER_BETA)
            box = box + distance.sum(1).mean()
            if self.nc > 1:
                cls = cls + bernoulli_kl(s_cells[:, 5:], t_cells[:, 5:]).mean()
        box, obj, cls = box * self.box_gain, obj * self.obj_gain, cls * self.cls_gain
        total = box + obj + cls
        return total * student[0].shape[0], torch.cat((box, obj, cls, total)).detach()
