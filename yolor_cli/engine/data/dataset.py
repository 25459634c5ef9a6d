"""The training and evaluation dataset: mosaic, perspective, HSV, flips, mixup, letterbox and
rectangular batches, over records verified by :mod:`yolor_cli.engine.data.labels`."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from yolor_cli.engine.boxes import Letterbox, xywhn_to_xyxy, xyxy_to_xywhn
from yolor_cli.engine.config import Hyp
from yolor_cli.engine.data.augment import (
    augment_hsv,
    flip_lr,
    flip_ud,
    letterbox,
    mixup,
    mosaic_canvas,
    random_perspective,
)
from yolor_cli.engine.data.images import read_image
from yolor_cli.engine.data.labels import ImageRecord, LabelScan
from yolor_cli.engine.reporting import Reporter, SilentReporter

MOSAIC_TILES = 4


@dataclass(frozen=True)
class Sample:
    """One item: CHW RGB uint8 image, targets (n, 6) = [0, class, cx, cy, w, h] normalised, and the
    geometry from the original image to this one (None for mosaics, which have no single source)."""

    image: torch.Tensor
    targets: torch.Tensor
    path: str
    geometry: Letterbox | None


def rect_batch_shapes(sizes_wh: np.ndarray, batch_size: int, img_size: int, stride: int, pad: float) -> np.ndarray:
    """Per batch (h, w): the smallest stride-multiple shape that fits every aspect ratio in it.

    ``sizes_wh`` must already be sorted by aspect ratio (h / w).
    """
    batches = int(np.ceil(len(sizes_wh) / batch_size))
    aspect = sizes_wh[:, 1] / sizes_wh[:, 0]
    shapes = np.ones((batches, 2))
    for batch in range(batches):
        chunk = aspect[batch * batch_size : (batch + 1) * batch_size]
        if chunk.max() < 1:
            shapes[batch] = [chunk.max(), 1]
        elif chunk.min() > 1:
            shapes[batch] = [1, 1 / chunk.min()]
    return (np.ceil(shapes * img_size / stride + pad) * stride).astype(int)


class DetectionDataset(Dataset):
    def __init__(
        self,
        records: list[ImageRecord],
        *,
        img_size: int,
        hyp: Hyp | None = None,
        augment: bool = False,
        rect: bool = False,
        batch_size: int = 16,
        stride: int = 32,
        pad: float = 0.0,
        cache_images: bool = False,
        seed: int = 0,
        reporter: Reporter | None = None,
    ) -> None:
        if augment and hyp is None:
            raise ValueError("augmentation needs hyperparameters")
        self.img_size = img_size
        self.hyp = hyp
        self.augment = augment
        self.rect = rect
        # Mosaic (with mixup) can be switched off for the last epochs (--close-mosaic). The switch is
        # a shared-memory tensor, not an attribute: persistent loader workers hold their own copy of the
        # dataset, and only shared memory reaches them without restarting them.
        self._mosaic_switch = torch.ones(1, dtype=torch.uint8).share_memory_() if augment and not rect else None
        self.records = list(records)
        self.batch_shapes: np.ndarray | None = None
        if rect:
            self.records.sort(key=lambda r: r.height / r.width)
            sizes = np.array([[r.width, r.height] for r in self.records], dtype=np.float64)
            self.batch_shapes = rect_batch_shapes(sizes, batch_size, img_size, stride, pad)
        self.batch_size = batch_size
        self.label_scan: LabelScan | None = None  # what the label scan skipped, for callers that must refuse it
        # Set again in each DataLoader worker from the loader's seed (see loader.seed_worker).
        self.rng = np.random.default_rng(seed)
        self._cache: list[tuple[np.ndarray, tuple[int, int]] | None] = [None] * len(self.records)
        self.cached_bytes = 0
        if cache_images:
            reporter = reporter or SilentReporter()
            for index in reporter.track(range(len(self.records)), "Caching images in RAM", total=len(self.records)):
                self._cache[index] = self._read_resized(index)
                self.cached_bytes += self._cache[index][0].nbytes

    def __len__(self) -> int:
        return len(self.records)

    @property
    def mosaic(self) -> bool:
        """Whether training samples are mosaics now (augmented, not rectangular, not switched off)."""
        return self._mosaic_switch is not None and bool(self._mosaic_switch[0])

    def set_mosaic(self, enabled: bool) -> None:
        """Switch mosaic and mixup on or off, in this process and in every loader worker; samples
        drawn after the call see it (set it before an epoch's iterator starts: workers prefetch)."""
        if self._mosaic_switch is None:
            raise ValueError("this dataset makes no mosaics (evaluation or rectangular batches)")
        self._mosaic_switch[0] = int(enabled)

    def _read_resized(self, index: int) -> tuple[np.ndarray, tuple[int, int]]:
        record = self.records[index]
        image = read_image(record.image)
        h0, w0 = image.shape[:2]
        ratio = self.img_size / max(h0, w0)
        if ratio != 1:
            shrink_for_eval = ratio < 1 and not self.augment
            image = cv2.resize(
                image,
                (max(1, int(w0 * ratio)), max(1, int(h0 * ratio))),
                interpolation=cv2.INTER_AREA if shrink_for_eval else cv2.INTER_LINEAR,
            )
        return image, (h0, w0)

    def load_image(self, index: int) -> tuple[np.ndarray, tuple[int, int]]:
        """The image resized so its long side is img_size, and its original (h, w)."""
        cached = self._cache[index]
        return cached if cached is not None else self._read_resized(index)

    def _pixel_labels(self, index: int, width: int, height: int) -> np.ndarray:
        labels = self.records[index].labels.astype(np.float64)
        out = labels.copy()
        out[:, 1:5] = xywhn_to_xyxy(labels[:, 1:5], width, height)
        return out

    def _load_mosaic(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        indices = [index, *self.rng.integers(0, len(self), MOSAIC_TILES - 1)]
        tiles, tile_labels = [], []
        for tile_index in indices:
            image, _ = self.load_image(int(tile_index))
            tiles.append(image)
            tile_labels.append(self._pixel_labels(int(tile_index), image.shape[1], image.shape[0]))
        canvas, labels = mosaic_canvas(tiles, tile_labels, self.img_size, self.rng)
        border = -self.img_size // 2
        return self._perspective(canvas, labels, border=(border, border))

    def _perspective(
        self, image: np.ndarray, labels: np.ndarray, border: tuple[int, int] = (0, 0)
    ) -> tuple[np.ndarray, np.ndarray]:
        hyp = self.hyp
        assert hyp is not None
        return random_perspective(
            image,
            labels,
            self.rng,
            degrees=hyp.degrees,
            translate=hyp.translate,
            scale=hyp.scale,
            shear=hyp.shear,
            perspective=hyp.perspective,
            border=border,
        )

    def __getitem__(self, index: int) -> Sample:
        hyp = self.hyp
        geometry = None
        if self.mosaic and hyp is not None and self.rng.random() < hyp.mosaic:
            image, labels = self._load_mosaic(index)
            if self.rng.random() < hyp.mixup:
                other, other_labels = self._load_mosaic(int(self.rng.integers(0, len(self))))
                image, labels = mixup(image, labels, other, other_labels, self.rng)
        else:
            loaded, (h0, w0) = self.load_image(index)
            h, w = loaded.shape[:2]
            if self.batch_shapes is not None:
                target = tuple(int(v) for v in self.batch_shapes[index // self.batch_size])
            else:
                target = (self.img_size, self.img_size)
            image, box = letterbox(loaded, target, scale_up=self.augment)
            labels = self._pixel_labels(index, w, h)
            labels[:, 1:5] = box.to_target(labels[:, 1:5])
            # One geometry from the original image straight to this one, for mapping predictions back.
            geometry = Letterbox(source=(h0, w0), target=box.target, resized=box.resized, pad=box.pad)
            if self.augment:
                image, labels = self._perspective(image, labels)
        if self.augment and hyp is not None:
            image = augment_hsv(image, self.rng, hyp.hsv_h, hyp.hsv_s, hyp.hsv_v)
            if self.rng.random() < hyp.flipud:
                image, labels = flip_ud(image, labels)
            if self.rng.random() < hyp.fliplr:
                image, labels = flip_lr(image, labels)
        targets = np.zeros((len(labels), 6), dtype=np.float32)
        if len(labels):
            targets[:, 1] = labels[:, 0]
            targets[:, 2:] = xyxy_to_xywhn(labels[:, 1:5], image.shape[1], image.shape[0])
        chw_rgb = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))
        return Sample(
            image=torch.from_numpy(chw_rgb),
            targets=torch.from_numpy(targets),
            path=str(self.records[index].image),
            geometry=geometry,
        )


def collate(samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor, list[str], list[Letterbox | None]]:
    """Stack images; targets become (N, 6) rows whose first column is the image's batch index."""
    targets = []
    for position, sample in enumerate(samples):
        rows = sample.targets.clone()
        rows[:, 0] = position
        targets.append(rows)
    return (
        torch.stack([s.image for s in samples]),
        torch.cat(targets, 0),
        [s.path for s in samples],
        [s.geometry for s in samples],
    )
