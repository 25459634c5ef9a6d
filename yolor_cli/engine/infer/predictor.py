"""Inference: letterboxed batches -> model -> NMS -> boxes in the original images' pixels.

Shared by ``yolor detect``, ``yolor eval`` and validation during training, so all three see the
same pre-processing, thresholds and coordinate mapping.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from yolor_cli.engine.boxes import Letterbox, non_max_suppression
from yolor_cli.engine.data.augment import letterbox
from yolor_cli.engine.infer.exported import ExportedDetector
from yolor_cli.engine.infer.request import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.runtime import FP32, InferencePrecision


@dataclass
class Detections:
    """One image's detections in its original pixels: xyxy boxes (n, 4), scores, class indices."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class Timing:
    """Accumulated seconds per stage and the number of images, for per-image milliseconds."""

    preprocess: float = 0.0
    inference: float = 0.0
    nms: float = 0.0
    images: int = 0

    def per_image_ms(self) -> dict[str, float]:
        count = max(self.images, 1)
        return {stage: 1000 * getattr(self, stage) / count for stage in ("preprocess", "inference", "nms")}


HALF_ON_CUDA = InferencePrecision(torch.float16, "CUDA, half=True")


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class Predictor:
    """Holds a fused eval-mode model on its device and the thresholds to apply.

    A PyTorch model runs in ``precision`` (fp32 when neither it nor ``half`` is given; ``half`` is
    fp16 on CUDA, as validation while training asks for it). In bf16 the whole model is cast
    (weights, activations and input) and laid out channels-last rather than run under autocast,
    which re-casts every weight on every call: the cast ran at least as fast as autocast with half the
    weight memory, and its boxes stay within a small fraction of a pixel of fp32 once anchors and
    decoding stay float32 (YoloLayer; benchmarks/README.md#precision).
    An ONNX file runs in the type it was exported in; ``precision`` stays None for the caller to name.
    """

    precision: InferencePrecision | None = None

    def __init__(
        self,
        model: DarknetModel | ExportedDetector,
        *,
        device: torch.device | str = "cpu",
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int = DEFAULT_MAX_DET,
        classes: list[int] | None = None,
        half: bool = False,
        multi_label: bool = True,
        fuse: bool = True,
        precision: InferencePrecision | None = None,
    ) -> None:
        self.conf, self.iou, self.max_det, self.classes = conf, iou, max_det, classes
        self.multi_label = multi_label
        self.timing = Timing()
        self.last_raw: list[torch.Tensor] = []  # the raw maps of the last batch (validation losses use them)
        self.fixed_size: tuple[int, int] | None = None  # (h, w) of a model that takes one input size only
        self.exported: ExportedDetector | None = None
        if isinstance(model, ExportedDetector):  # its runtime picks its own device; it takes float [0, 1] batches
            self.device, self.half, self.stride = torch.device("cpu"), False, model.stride
            self.exported, self.fixed_size = model, model.fixed_size
            return
        device = torch.device(device)
        if precision is None:  # ``half`` as validation while training passes it: fp16 on CUDA only
            precision = HALF_ON_CUDA if half and device.type == "cuda" else FP32
        self.precision = precision
        if fuse or precision.dtype != torch.float32:  # work on a copy: the caller's model stays as it was
            model = copy.deepcopy(model)
        model = model.eval()
        if fuse:
            model.fuse()
        self.half = precision.dtype == torch.float16
        self.model = model.to(device=device, dtype=precision.dtype)
        if self.bf16:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.device = device
        self.stride = model.max_stride

    @property
    def bf16(self) -> bool:
        """A PyTorch model cast to bf16 (an exported file casts its own input, whatever it computes in)."""
        return self.exported is None and self.precision is not None and self.precision.dtype == torch.bfloat16

    def prepare(self, image_bgr: np.ndarray, img_size: int) -> tuple[torch.Tensor, Letterbox]:
        """One BGR image -> CHW RGB uint8 tensor padded to a stride multiple (or to the model's one
        input size), and its geometry."""
        if self.fixed_size is not None:
            boxed, geometry = letterbox(image_bgr, self.fixed_size)
        else:
            boxed, geometry = letterbox(image_bgr, (img_size, img_size), minimal_pad_stride=self.stride)
        chw = np.ascontiguousarray(boxed[:, :, ::-1].transpose(2, 0, 1))
        return torch.from_numpy(chw), geometry

    def to_model_input(self, batch: torch.Tensor) -> torch.Tensor:
        """A float [0, 1] batch on the model's device, in its type and memory layout."""
        batch = batch.to(self.device, non_blocking=True)
        if self.bf16:
            return batch.to(torch.bfloat16, memory_format=torch.channels_last)
        return batch.half() if self.half else batch.float()

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The decoded (bs, N, 5+nc) output of a float [0, 1] batch, without NMS: what a latency
        benchmark times."""
        if self.exported is not None:
            return self.exported(batch)
        return self.model(self.to_model_input(batch))[0]

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, geometries: list[Letterbox]) -> list[Detections]:
        """``images`` (bs, 3, h, w) uint8 RGB as the loaders give them."""
        start = _now(self.device)
        batch = images.to(self.device, non_blocking=True)
        batch = self.to_model_input((batch.half() if self.half else batch.float()) / 255.0)
        after_pre = _now(self.device)
        decoded, self.last_raw = (self.exported(batch), []) if self.exported is not None else self.model(batch)
        after_model = _now(self.device)
        kept = non_max_suppression(
            decoded.float(),
            conf_threshold=self.conf,
            iou_threshold=self.iou,
            classes=self.classes,
            max_det=self.max_det,
            multi_label=self.multi_label,
        )
        results = []
        for det, geometry in zip(kept, geometries):
            det = det.cpu().numpy().astype(np.float64)
            boxes = geometry.to_source(det[:, :4]) if geometry is not None else det[:, :4]
            results.append(Detections(boxes=boxes, scores=det[:, 4], classes=det[:, 5].astype(int)))
        end = _now(self.device)
        self.timing.preprocess += after_pre - start
        self.timing.inference += after_model - after_pre
        self.timing.nms += end - after_model
        self.timing.images += len(images)
        return results
