"""Evaluation of many models on one split, read from disk once.

``yolor prune sensitivity`` scores dozens of pruned variants of one model on the same images. Reading,
decoding and letterboxing those images again for every variant would cost more than the inference,
so :class:`PreloadedSplit` keeps the letterboxed batches (uint8 tensors, the loader's exact output)
and the ground truth in memory, and :func:`evaluate_preloaded` runs them through the shared
:class:`Predictor` (same fusing, NMS and coordinate mapping) and scores them with the shared metrics.
On the same images its figures are those of :func:`evaluate_model`.

Memory: every image is held as 3 x h x w bytes at its rectangular batch shape (about 0.3 MB at 320 px,
1.2 MB at 640 px); ``max_images`` bounds it for large splits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from yolor_cli.engine.boxes import Letterbox
from yolor_cli.engine.config import DataConfig
from yolor_cli.engine.data.dataset import DetectionDataset
from yolor_cli.engine.data.labels import ImageRecord
from yolor_cli.engine.data.loader import build_dataloader
from yolor_cli.engine.errors import YolorError
from yolor_cli.engine.evaluate.evaluator import EVAL_PAD, evaluation_dataset, ground_truth
from yolor_cli.engine.evaluate.metrics import ImageDetections, Metrics, evaluate_detections
from yolor_cli.engine.evaluate.request import EVAL_BATCH_SIZE, EVAL_CONF, EVAL_IOU
from yolor_cli.engine.infer.predictor import Predictor
from yolor_cli.engine.model.darknet import DarknetModel
from yolor_cli.engine.model.darknet.model import ForwardState
from yolor_cli.engine.reporting import Reporter, SilentReporter


@dataclass(frozen=True)
class PreloadedBatch:
    """One rectangular batch as the evaluation loader gives it: uint8 RGB images (bs, 3, h, w), each
    image's geometry back to its original pixels, and its ground truth (xyxy pixels, classes)."""

    images: torch.Tensor
    geometries: list[Letterbox]
    truth: list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class PreloadedSplit:
    """A data split letterboxed once for evaluation at ``img_size`` (see the module docstring)."""

    batches: list[PreloadedBatch]
    names: list[str]
    task: str
    img_size: int
    stride: int

    @property
    def images(self) -> int:
        return sum(len(batch.images) for batch in self.batches)

    @property
    def instances(self) -> int:
        return sum(len(classes) for batch in self.batches for _, classes in batch.truth)

    @property
    def nbytes(self) -> int:
        return sum(batch.images.numel() for batch in self.batches)

    @classmethod
    def load(
        cls,
        data: DataConfig,
        task: str,
        img_size: int,
        stride: int,
        batch_size: int = EVAL_BATCH_SIZE,
        max_images: int | None = None,
        reporter: Reporter | None = None,
    ) -> PreloadedSplit:
        """Read ``task`` of ``data`` as :func:`evaluate_model` would (rectangular batches, the same
        padding), keeping every batch in memory. ``max_images`` keeps that many images spread evenly
        over the split in file order (so a sorted split is not cut to its first classes or scenes)."""
        if max_images is not None and max_images < 1:
            raise YolorError(f"--max-images {max_images} must be at least 1")
        reporter = reporter or SilentReporter()
        dataset = evaluation_dataset(data, task, img_size, batch_size, stride, reporter)
        if max_images is not None and max_images < len(dataset):
            dataset = DetectionDataset(
                _spread(dataset.records, max_images),
                img_size=img_size,
                rect=True,
                batch_size=batch_size,
                stride=stride,
                pad=EVAL_PAD,
            )
        by_path = {str(record.image): record for record in dataset.records}
        loader = build_dataloader(dataset, batch_size=batch_size)
        batches = [
            PreloadedBatch(
                images=images,
                geometries=list(geometries),
                truth=[ground_truth(by_path[path]) for path in paths],
            )
            for images, _, paths, geometries in reporter.track(
                loader, f"Loading {len(dataset)} {task} images", total=len(loader)
            )
        ]
        return cls(batches=batches, names=list(data.names), task=task, img_size=img_size, stride=stride)


def _spread(records: list[ImageRecord], count: int) -> list[ImageRecord]:
    ordered = sorted(records, key=lambda record: str(record.image))
    picks = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i] for i in picks]


PREFIX_BUDGET_BYTES = 1 << 30  # the most the shared prefix states may hold (over all batches)


class SharedPrefix:
    """Evaluates variants of one model that equal it up to some module, without recomputing that part.

    A pruned variant computes exactly what the unpruned model computes before the first module the
    pruning changed. This keeps the unpruned (fused) model's forward state at one module boundary for
    every batch of the split, and resumes each variant from it; variants come in module order in a
    sensitivity scan, so the boundary only moves forward, a segment at a time, and the whole prefix
    work of a scan is about one forward pass. Figures are those of a full forward (a test checks it).

    A boundary whose states would take more than ``budget_bytes`` over the split (early, wide, high
    resolution layers of a large model on many images) is not kept: its variants run in full.
    """

    def __init__(
        self,
        model: DarknetModel,
        split: PreloadedSplit,
        *,
        device: Any = "cpu",
        budget_bytes: int = PREFIX_BUDGET_BYTES,
    ) -> None:
        self.reference = copy.deepcopy(model).eval()
        self.device = torch.device(device)
        self.fused = copy.deepcopy(self.reference).fuse().to(self.device)
        self.split = split
        self.budget_bytes = budget_bytes
        self.start = 0
        self.states: list[ForwardState] | None = None  # at self.start; None = the images themselves
        self.bytes_per_image = self._state_sizes()

    @torch.inference_mode()
    def _state_sizes(self) -> list[int]:
        """Bytes of one image's state before each module (and after the last), from one image."""
        largest = max(self.split.batches, key=lambda batch: batch.images.shape[-2] * batch.images.shape[-1])
        state = ForwardState(self._initial(largest).x[:1])
        sizes = []
        for index in range(len(self.fused.module_list) + 1):
            sizes.append(_nbytes(self._trimmed(state, index)))
            if index < len(self.fused.module_list):
                state = self.fused.run_modules(state, index, index + 1)
        return sizes

    def first_changed(self, variant: DarknetModel) -> int:
        """The first module of ``variant`` whose tensors differ (in shape or value) from the model's."""
        for index, (mine, theirs) in enumerate(zip(self.reference.module_list, variant.module_list)):
            a, b = mine.state_dict(), theirs.state_dict()
            if a.keys() != b.keys() or any(
                x.shape != y.shape or not torch.equal(x, y.to(x.device)) for x, y in zip(a.values(), b.values())
            ):
                return index
        return len(self.reference.module_list)

    def states_at(self, start: int) -> list[ForwardState] | None:
        """Every batch's state just before module ``start``, or None where resuming gains nothing
        (``start`` 0) or the states would exceed the budget."""
        images = self.split.images
        if start == 0 or self.bytes_per_image[start] * images > self.budget_bytes:
            return None
        if self.states is None or start < self.start:
            self.start, self.states = 0, None
        if start != self.start:
            # One batch at a time, each earlier state dropped as it moves on: a float copy of every
            # image at once would be 4x the uint8 preload, outside the budget.
            pending, moved = self.states, []
            self.states = None
            with torch.inference_mode():
                for batch in self.split.batches:
                    state = pending.pop(0) if pending is not None else self._initial(batch)
                    moved.append(self._trimmed(self.fused.run_modules(state, self.start, start), start))
            self.states, self.start = moved, start
        return self.states

    def _initial(self, batch: PreloadedBatch) -> ForwardState:
        """What the model sees first: the batch as :class:`Predictor` hands it over."""
        return ForwardState(batch.images.to(self.device).float() / 255.0)

    def _trimmed(self, state: ForwardState, index: int) -> ForwardState:
        """``state`` without the kept outputs no module from ``index`` on reads (they would only hold memory)."""
        needed = self.fused.needed_after(index)
        return ForwardState(state.x, {j: t for j, t in state.kept.items() if j in needed}, state.levels)


def _nbytes(state: ForwardState) -> int:
    tensors = [state.x, *state.kept.values(), *(t for level in state.levels for t in level)]
    return sum(t.numel() * t.element_size() for t in tensors)


class _Resumed(nn.Module):
    """A fused variant that :class:`Predictor` drives like a model: each call takes the next batch's
    shared state in place of the images (which equal that state's origin) and runs the rest."""

    def __init__(self, model: DarknetModel, start: int, states: list[ForwardState]) -> None:
        super().__init__()
        self.model = model
        self.start = start
        self._states = iter(states)

    @property
    def max_stride(self) -> int:
        return self.model.max_stride

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        state = next(self._states)
        return self.model.outputs(self.model.run_modules(state, self.start, len(self.model.module_list)))


def evaluate_preloaded(
    model: DarknetModel,
    split: PreloadedSplit,
    *,
    conf: float = EVAL_CONF,
    iou: float = EVAL_IOU,
    metric: str = "coco",
    device: Any = "cpu",
    fuse: bool = True,
    prefix: SharedPrefix | None = None,
) -> Metrics:
    """The metrics of ``model`` on ``split``: the detections :class:`Predictor` gives (fused on a copy
    unless ``fuse`` is False, the caller's model is left as it was) scored by the shared metrics.

    With ``prefix`` (made from the unpruned model on this split and device), ``model`` resumes from
    its states at the first module it changed; it must be fused, like the prefix's."""
    if model.nc != len(split.names):
        raise YolorError(
            f"the data has {len(split.names)} classes but the model was built for nc={model.nc}",
            hint="evaluate with the data the model was trained on, or fix names in the data file",
        )
    if model.max_stride != split.stride:  # the batches were padded to the loading model's stride
        raise YolorError(f"the split was letterboxed for stride {split.stride}, the model's is {model.max_stride}")
    runner: DarknetModel | _Resumed = model
    if prefix is not None:
        if not fuse or prefix.split is not split or prefix.device != torch.device(device):
            raise ValueError("a shared prefix serves fused models on its own split and device")
        start = prefix.first_changed(model)
        states = prefix.states_at(start)
        if states is not None:
            runner, fuse = _Resumed(copy.deepcopy(model).eval().fuse(), start, states), False
    predictor = Predictor(runner, device=device, conf=conf, iou=iou, fuse=fuse)  # type: ignore[arg-type]
    scored = []
    for batch in split.batches:
        for detections, (gt_boxes, gt_classes) in zip(predictor(batch.images, batch.geometries), batch.truth):
            scored.append(
                ImageDetections(detections.boxes, detections.scores, detections.classes, gt_boxes, gt_classes)
            )
    return evaluate_detections(scored, len(split.names), metric)
