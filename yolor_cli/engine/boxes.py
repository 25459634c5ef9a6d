"""Box formats and letterbox geometry: the one place that converts between them.

Formats (last axis holds 4 values; leading axes are free):
- ``xyxy``: corners x1, y1, x2, y2 in pixels;
- ``xywh``: centre x, centre y, width, height in pixels;
- ``xywhn``: the same as fractions of the image width and height (YOLO label files).

Functions accept numpy arrays and torch tensors alike and never modify their input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

Boxes = TypeVar("Boxes", np.ndarray, torch.Tensor)


def _empty_like(boxes: Boxes) -> Boxes:
    return boxes.clone() if isinstance(boxes, torch.Tensor) else np.array(boxes, dtype=np.float64, copy=True)


def xyxy_to_xywh(boxes: Boxes) -> Boxes:
    out = _empty_like(boxes)
    out[..., 0] = (boxes[..., 0] + boxes[..., 2]) / 2
    out[..., 1] = (boxes[..., 1] + boxes[..., 3]) / 2
    out[..., 2] = boxes[..., 2] - boxes[..., 0]
    out[..., 3] = boxes[..., 3] - boxes[..., 1]
    return out


def xywh_to_xyxy(boxes: Boxes) -> Boxes:
    out = _empty_like(boxes)
    out[..., 0] = boxes[..., 0] - boxes[..., 2] / 2
    out[..., 1] = boxes[..., 1] - boxes[..., 3] / 2
    out[..., 2] = boxes[..., 0] + boxes[..., 2] / 2
    out[..., 3] = boxes[..., 1] + boxes[..., 3] / 2
    return out


def xywhn_to_xyxy(boxes: Boxes, width: float, height: float, pad_x: float = 0.0, pad_y: float = 0.0) -> Boxes:
    """Normalised centre boxes of a ``width`` x ``height`` image to pixel corners, shifted by the pad."""
    out = xywh_to_xyxy(boxes)
    out[..., 0::2] = out[..., 0::2] * width + pad_x
    out[..., 1::2] = out[..., 1::2] * height + pad_y
    return out


def xyxy_to_xywhn(boxes: Boxes, width: float, height: float) -> Boxes:
    out = xyxy_to_xywh(boxes)
    out[..., 0::2] = out[..., 0::2] / width
    out[..., 1::2] = out[..., 1::2] / height
    return out


def clip_xyxy(boxes: Boxes, width: float, height: float) -> Boxes:
    out = _empty_like(boxes)
    if isinstance(out, torch.Tensor):
        out[..., 0::2] = out[..., 0::2].clamp(0, width)
        out[..., 1::2] = out[..., 1::2].clamp(0, height)
    else:
        out[..., 0::2] = out[..., 0::2].clip(0, width)
        out[..., 1::2] = out[..., 1::2].clip(0, height)
    return out


@dataclass(frozen=True)
class Letterbox:
    """How an image of ``source`` (h, w) was resized by ``ratio`` and padded into ``target`` (h, w)."""

    source: tuple[int, int]
    target: tuple[int, int]
    resized: tuple[int, int]  # (h, w) after scaling, before padding
    pad: tuple[int, int]  # (left, top) in whole pixels; right and bottom take the remainder

    @property
    def scale(self) -> tuple[float, float]:
        """Per-axis (x, y) factors: exactly what the pixels went through after rounding the size."""
        return self.resized[1] / self.source[1], self.resized[0] / self.source[0]

    def to_target(self, boxes: Boxes) -> Boxes:
        """Pixel xyxy boxes in the source image -> in the letterboxed image."""
        out = _empty_like(boxes)
        out[..., 0::2] = boxes[..., 0::2] * self.scale[0] + self.pad[0]
        out[..., 1::2] = boxes[..., 1::2] * self.scale[1] + self.pad[1]
        return out

    def to_source(self, boxes: Boxes) -> Boxes:
        """Pixel xyxy boxes in the letterboxed image -> in the source image, clipped to it."""
        out = _empty_like(boxes)
        out[..., 0::2] = (boxes[..., 0::2] - self.pad[0]) / self.scale[0]
        out[..., 1::2] = (boxes[..., 1::2] - self.pad[1]) / self.scale[1]
        return clip_xyxy(out, self.source[1], self.source[0])


def letterbox_geometry(
    source: tuple[int, int], target: tuple[int, int], *, scale_up: bool = True, minimal_pad_stride: int | None = None
) -> Letterbox:
    """Scale to fit ``target`` (h, w) keeping the aspect ratio, then pad evenly on both sides.

    ``minimal_pad_stride`` pads only to the next multiple of that stride (rectangular inference)
    instead of to the full target; ``scale_up=False`` never enlarges (better for evaluation).
    """
    height, width = source
    ratio = min(target[0] / height, target[1] / width)
    if not scale_up:
        ratio = min(ratio, 1.0)
    resized = (max(1, int(round(height * ratio))), max(1, int(round(width * ratio))))
    pad_h, pad_w = target[0] - resized[0], target[1] - resized[1]
    if minimal_pad_stride:
        pad_h, pad_w = pad_h % minimal_pad_stride, pad_w % minimal_pad_stride
    final = (resized[0] + pad_h, resized[1] + pad_w)
    # Whole-pixel offsets, so boxes move exactly as far as the pixels do (the official code maps
    # boxes with the fractional half-pad and can be off by half a pixel).
    return Letterbox(source=source, target=final, resized=resized, pad=(pad_w // 2, pad_h // 2))


# ---- non-maximum suppression -----------------------------------------------------------------

MAX_NMS_CANDIDATES = 30_000  # best-scoring boxes that enter NMS; an untrained model passes millions


def non_max_suppression(
    prediction: torch.Tensor,
    *,
    conf_threshold: float,
    iou_threshold: float,
    max_det: int,
    classes: list[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = True,
) -> list[torch.Tensor]:
    """Decoded model output (bs, N, 5+nc: cx, cy, w, h, objectness, class probabilities) ->
    per image an (n, 6) tensor ``x1, y1, x2, y2, score, class``, best first.

    The score is objectness x class probability. With ``multi_label`` a box may be kept for every
    class whose score passes the threshold (better recall for mAP); otherwise only its best class.
    """
    from torchvision.ops import batched_nms

    nc = prediction.shape[2] - 5
    output = []
    for x in prediction:
        x = x[x[:, 4] > conf_threshold]
        if not x.shape[0]:
            output.append(torch.zeros((0, 6), device=prediction.device))
            continue
        scores = x[:, 5:] * x[:, 4:5]
        boxes = xywh_to_xyxy(x[:, :4])
        if multi_label and nc > 1:
            rows, cls = (scores > conf_threshold).nonzero(as_tuple=True)
            det = torch.cat((boxes[rows], scores[rows, cls, None], cls[:, None].to(boxes.dtype)), 1)
        else:
            best, cls = scores.max(1, keepdim=True)
            det = torch.cat((boxes, best, cls.to(boxes.dtype)), 1)[best.view(-1) > conf_threshold]
        if classes is not None:
            det = det[(det[:, 5:6] == torch.tensor(classes, device=det.device)).any(1)]
        if not det.shape[0]:
            output.append(torch.zeros((0, 6), device=prediction.device))
            continue
        if det.shape[0] > MAX_NMS_CANDIDATES:
            det = det[det[:, 4].topk(MAX_NMS_CANDIDATES).indices]
        groups = torch.zeros_like(det[:, 5]) if agnostic else det[:, 5]
        keep = batched_nms(det[:, :4], det[:, 4], groups.long(), iou_threshold)[:max_det]
        output.append(det[keep])
    return output
