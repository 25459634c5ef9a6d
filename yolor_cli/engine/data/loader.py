"""From a data.yaml split to a DataLoader: one function, seeded workers, our collate."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, get_worker_info

from yolor_cli.engine.config import DataConfig, Hyp
from yolor_cli.engine.data.dataset import DetectionDataset, collate
from yolor_cli.engine.data.labels import ImageRecord, collect_image_files, scan_labels
from yolor_cli.engine.errors import DataError
from yolor_cli.engine.reporting import Reporter, SilentReporter

MAX_WARNINGS_SHOWN = 20


def seed_worker(worker_id: int) -> None:
    """Each worker draws from its own stream, derived from the loader's seeded generator, so runs
    repeat exactly and workers never share augmentations."""
    info = get_worker_info()
    seed = info.seed if info is not None else torch.initial_seed()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if info is not None:
        info.dataset.rng = np.random.default_rng(seed)


def single_class(record: ImageRecord) -> ImageRecord:
    labels = record.labels.copy()
    labels[:, 0] = 0
    return dataclasses.replace(record, labels=labels)


def build_dataset(
    data: DataConfig,
    split: str,
    *,
    img_size: int,
    batch_size: int,
    hyp: Hyp | None = None,
    augment: bool = False,
    rect: bool = False,
    stride: int = 32,
    pad: float = 0.0,
    cache_images: bool = False,
    seed: int = 0,
    reporter: Reporter | None = None,
) -> DetectionDataset:
    reporter = reporter or SilentReporter()
    entries = data.split(split)
    if not entries:
        raise DataError(f"{data.source} has no {split} entry")
    images = collect_image_files(entries)
    if not images:
        raise DataError(f"no images found for {split} in {', '.join(map(str, entries))}")
    scan = scan_labels(images, data.label_nc or data.nc, reporter=reporter)
    for message in scan.warnings[:MAX_WARNINGS_SHOWN]:
        reporter.warning(message)
    if len(scan.warnings) > MAX_WARNINGS_SHOWN:
        reporter.warning(f"... and {len(scan.warnings) - MAX_WARNINGS_SHOWN} more problems in {split} labels")
    if not scan.records:
        raise DataError(f"none of the {len(images)} {split} images is usable")
    records = scan.records if data.label_nc is None else [single_class(record) for record in scan.records]
    dataset = DetectionDataset(
        records,
        img_size=img_size,
        hyp=hyp,
        augment=augment,
        rect=rect,
        batch_size=batch_size,
        stride=stride,
        pad=pad,
        cache_images=cache_images,
        seed=seed,
        reporter=reporter,
    )
    dataset.label_scan = scan
    return dataset


def build_dataloader(
    dataset: DetectionDataset,
    *,
    batch_size: int,
    workers: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    sampler: Sampler | None = None,
) -> DataLoader:
    if dataset.rect and shuffle:
        raise ValueError("rectangular batches rely on the dataset order; do not shuffle them")
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=seed_worker,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )
