"""Which images an epoch draws: ``--image-weights`` favours images of rare and poorly detected
classes, as YOLOR does; in DDP each process takes its own share of one shared draw."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from yolor_cli.engine.data.labels import ImageRecord


def class_counts(records: Sequence[ImageRecord], nc: int) -> np.ndarray:
    """(images, nc) instances of each class per image."""
    return np.array([np.bincount(r.labels[:, 0].astype(int), minlength=nc)[:nc] for r in records]).reshape(-1, nc)


def class_weights(records: Sequence[ImageRecord], nc: int) -> np.ndarray:
    """Inverse class frequency, normalised to sum 1 (a class never seen counts as seen once)."""
    counts = class_counts(records, nc).sum(0).astype(np.float64)
    counts[counts == 0] = 1
    weights = 1 / counts
    return weights / weights.sum()


def image_weights(records: Sequence[ImageRecord], weights_per_class: np.ndarray) -> np.ndarray:
    """An image's weight is the sum of its instances' class weights (images without labels get 0)."""
    return class_counts(records, len(weights_per_class)) @ weights_per_class


class WeightedImageSampler(Sampler[int]):
    """Draws ``len(dataset)`` indices with replacement by weight, anew each epoch and the same on
    every process (seeded by epoch); process ``rank`` of ``world_size`` takes every world_size-th."""

    def __init__(self, weights: np.ndarray, *, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.count = len(weights)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.set_weights(weights)

    def set_weights(self, weights: np.ndarray) -> None:
        weights = np.asarray(weights, dtype=np.float64)
        self.weights = torch.from_numpy(weights if weights.sum() > 0 else np.ones_like(weights))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        # Every process gets the same number of indices: unequal batch counts would leave one process
        # waiting in a collective the others never reach.
        drawn = torch.multinomial(self.weights, len(self) * self.world_size, replacement=True, generator=generator)
        return iter(drawn[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return math.ceil(self.count / self.world_size)


class RectBlockSampler(Sampler[int]):
    """Rectangular batches under DDP: batch b (consecutive indices, one shape) goes whole to process
    b % world_size; a process short of a batch repeats its first one (in front, so a short final batch
    stays last and alone), so all processes step equally often."""

    def __init__(self, count: int, batch_size: int, *, rank: int, world_size: int) -> None:
        batches = [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]
        mine = batches[rank::world_size]
        per_rank = math.ceil(len(batches) / world_size)
        mine = mine[:1] * (per_rank - len(mine)) + mine
        self.indices = [index for batch in mine for index in batch]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
