"""The YOLOR training loss: anchor matching with neighbour cells, CIoU box loss, objectness
targeted at the IoU, per-level balance, class loss only when there is more than one class and
with its gain scaled by nc / 80 (as the official trainer scales ``hyp['cls']``).

Follows the official ``utils/loss.py`` (compute_loss / build_targets) with its dtype bug fixed:
grid indices are clamped with integer bounds, so it runs on current torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import complete_box_iou_loss

from yolor_cli.engine.boxes import xywh_to_xyxy
from yolor_cli.engine.config import Hyp
from yolor_cli.engine.model.darknet import DarknetModel

# Objectness weight per level (P3, P4, P5[, P6[, P7]]): small-object levels see more negatives.
LEVEL_BALANCE = {3: [4.0, 1.0, 0.4], 4: [4.0, 1.0, 0.4, 0.1], 5: [4.0, 1.0, 0.5, 0.4, 0.1]}
NEIGHBOUR_REACH = 0.5  # a target also trains the adjacent cell on the side of the nearer cell edge
NEIGHBOUR_OFFSETS = [[1, 0], [0, 1], [-1, 0], [0, -1]]
OBJECTNESS_BOOST_FROM_4_LEVELS = 1.4
IOU_RATIO = 1.0  # objectness target = (1 - r) + r * IoU; the official trainer sets r = 1
# The hyp's ``cls`` gain is tuned on COCO's 80 classes; YOLOR scales it by nc / 80 for other datasets.
# Without this, a 3-class dataset weighs the class loss 27x too heavily and box and objectness barely learn.
COCO_CLASSES = 80


@dataclass(frozen=True)
class LevelTargets:
    image: torch.Tensor  # (n,) image index in the batch
    anchor: torch.Tensor  # (n,) anchor index within the level
    gy: torch.Tensor  # (n,) grid row
    gx: torch.Tensor  # (n,) grid column
    box: torch.Tensor  # (n, 4) x, y offsets within the cell and w, h, in grid units
    anchor_wh: torch.Tensor  # (n, 2) the matched anchors, in grid units
    cls: torch.Tensor  # (n,) class


def build_targets(
    raw: list[torch.Tensor], targets: torch.Tensor, anchors_grid: list[torch.Tensor], anchor_t: float
) -> list[LevelTargets]:
    """Assign targets (image, class, cx, cy, w, h normalised) to anchors and cells of every level.

    A target goes to each anchor whose width and height ratios to it are within ``anchor_t``, in its
    own cell and the two neighbouring cells nearer to its centre.
    """
    device = targets.device
    count = targets.shape[0]
    offsets_table = torch.tensor(NEIGHBOUR_OFFSETS, device=device, dtype=targets.dtype)
    levels = []
    for p, anchors in zip(raw, anchors_grid):
        ny, nx = p.shape[2], p.shape[3]
        gain = torch.tensor([1, 1, nx, ny, nx, ny], device=device, dtype=targets.dtype)
        scaled = targets * gain
        na = anchors.shape[0]
        if count:
            anchor_index = torch.arange(na, device=device).view(na, 1).repeat(1, count)
            ratio = scaled[None, :, 4:6] / anchors[:, None]
            match = torch.max(ratio, 1.0 / ratio).max(2)[0] < anchor_t
            anchor_index, scaled = anchor_index[match], scaled.repeat(na, 1, 1)[match]
            gxy = scaled[:, 2:4]
            # Near the left/top edge of its cell (and not in the first cell): also the cell before;
            # near the right/bottom edge (and not in the last cell): also the cell after.
            left, top = ((gxy % 1.0 < NEIGHBOUR_REACH) & (gxy > 1.0)).T
            right, bottom = ((gxy % 1.0 > 1 - NEIGHBOUR_REACH) & (gxy < gain[[2, 3]] - 1.0)).T
            zero = torch.zeros_like(gxy)
            anchor_index = torch.cat(
                (anchor_index, anchor_index[left], anchor_index[top], anchor_index[right], anchor_index[bottom]), 0
            )
            offsets = torch.cat(
                (
                    zero,
                    zero[left] + offsets_table[0],
                    zero[top] + offsets_table[1],
                    zero[right] + offsets_table[2],
                    zero[bottom] + offsets_table[3],
                ),
                0,
            )
            offsets = offsets * NEIGHBOUR_REACH
            scaled = torch.cat((scaled, scaled[left], scaled[top], scaled[right], scaled[bottom]), 0)
        else:
            anchor_index = torch.zeros(0, dtype=torch.long, device=device)
            scaled = scaled[:0]
            offsets = torch.zeros((0, 2), device=device, dtype=targets.dtype)
        image, cls = scaled[:, :2].long().T
        gxy, gwh = scaled[:, 2:4], scaled[:, 4:6]
        cell = (gxy - offsets).long()
        gx, gy = cell[:, 0].clamp(0, nx - 1), cell[:, 1].clamp(0, ny - 1)  # integer bounds: the dtype bug fix
        levels.append(
            LevelTargets(
                image=image,
                anchor=anchor_index,
                gy=gy,
                gx=gx,
                box=torch.cat((gxy - cell, gwh), 1),
                anchor_wh=anchors[anchor_index],
                cls=cls,
            )
        )
    return levels


FOCAL_ALPHA = 0.25


class FocalLoss(nn.Module):
    """BCE-with-logits scaled by alpha and (1 - p_t)^gamma, used when the hyp sets fl_gamma > 0."""

    def __init__(self, bce: nn.BCEWithLogitsLoss, gamma: float, alpha: float = FOCAL_ALPHA) -> None:
        super().__init__()
        self.bce = bce
        self.bce.reduction = "none"
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.bce(logits, target)
        probability = logits.sigmoid()
        p_t = target * probability + (1 - target) * (1 - probability)
        alpha_factor = target * self.alpha + (1 - target) * (1 - self.alpha)
        return (loss * alpha_factor * (1.0 - p_t) ** self.gamma).mean()


def _classification_loss(positive_weight: float, gamma: float) -> nn.Module:
    bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([positive_weight]))
    return FocalLoss(bce, gamma) if gamma > 0 else bce


class YolorLoss:
    """Callable: ``loss(raw_maps, targets) -> (loss scaled by batch size, detached [box, obj, cls, total])``."""

    def __init__(self, model: DarknetModel, hyp: Hyp) -> None:
        self.hyp = hyp
        self.nc = model.nc
        self.anchors_grid = [layer.anchors / layer.stride for layer in model.yolo_layers]
        levels = len(self.anchors_grid)  # 3 to 5: other counts are refused when the model is built
        self.balance = LEVEL_BALANCE[levels]
        self.level_scale = 3 / levels
        self.obj_boost = OBJECTNESS_BOOST_FROM_4_LEVELS if levels >= 4 else 1.0
        self.bce_cls = _classification_loss(hyp.cls_pw, hyp.fl_gamma)
        self.bce_obj = _classification_loss(hyp.obj_pw, hyp.fl_gamma)

    def __call__(self, raw: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = targets.device
        anchors_grid = [a.to(device) for a in self.anchors_grid]
        self.bce_cls.to(device)
        self.bce_obj.to(device)
        zero = torch.zeros(1, device=device)
        box_loss, obj_loss, cls_loss = zero.clone(), zero.clone(), zero.clone()
        for level, (p, assigned) in enumerate(zip(raw, build_targets(raw, targets, anchors_grid, self.hyp.anchor_t))):
            obj_target = torch.zeros_like(p[..., 0])
            n = assigned.image.shape[0]
            if n:
                picked = p[assigned.image, assigned.anchor, assigned.gy, assigned.gx]
                pxy = picked[:, :2].sigmoid() * 2.0 - 0.5
                pwh = (picked[:, 2:4].sigmoid() * 2) ** 2 * assigned.anchor_wh
                ciou_loss = complete_box_iou_loss(
                    xywh_to_xyxy(torch.cat((pxy, pwh), 1)), xywh_to_xyxy(assigned.box), reduction="none"
                )
                box_loss = box_loss + ciou_loss.mean()
                iou = (1.0 - ciou_loss).detach().clamp(0).to(obj_target.dtype)
                obj_target[assigned.image, assigned.anchor, assigned.gy, assigned.gx] = (
                    1.0 - IOU_RATIO
                ) + IOU_RATIO * iou
                if self.nc > 1:
                    cls_target = torch.zeros_like(picked[:, 5:])
                    cls_target[torch.arange(n, device=device), assigned.cls] = 1.0
                    cls_loss = cls_loss + self.bce_cls(picked[:, 5:], cls_target)
            obj_loss = obj_loss + self.bce_obj(p[..., 4], obj_target) * self.balance[level]
        box_loss = box_loss * self.hyp.box * self.level_scale
        obj_loss = obj_loss * self.hyp.obj * self.level_scale * self.obj_boost
        cls_loss = cls_loss * self.hyp.cls * self.nc / COCO_CLASSES * self.level_scale
        total = box_loss + obj_loss + cls_loss
        batch_size = raw[0].shape[0]
        return total * batch_size, torch.cat((box_loss, obj_loss, cls_loss, total)).detach()
