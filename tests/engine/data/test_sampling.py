"""--image-weights: rare and poorly detected classes are drawn more; DDP processes split one draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yolor_cli.engine.data.labels import ImageRecord
from yolor_cli.engine.data.sampling import RectBlockSampler, WeightedImageSampler, class_weights, image_weights
from yolor_cli.engine.train.trainer import ImageWeighting


def _record(classes: list[int]) -> ImageRecord:
    labels = np.array([[c, 0.5, 0.5, 0.1, 0.1] for c in classes], dtype=np.float32).reshape(-1, 5)
    return ImageRecord(image=Path("x.jpg"), width=10, height=10, labels=labels)


def test_rare_classes_weigh_more_and_empty_images_are_not_drawn() -> None:
    records = [_record([0]), _record([0]), _record([0]), _record([1]), _record([])]
    weights = class_weights(records, 2)
    np.testing.assert_allclose(weights, [0.25, 0.75])  # inverse frequency 1/3 : 1, normalised
    np.testing.assert_allclose(image_weights(records, weights), [0.25, 0.25, 0.25, 0.75, 0.0])
    sampler = WeightedImageSampler(image_weights(records, weights), seed=0)
    drawn = []
    for epoch in range(200):
        sampler.set_epoch(epoch)
        drawn += list(sampler)
    counts = np.bincount(drawn, minlength=5)
    assert counts[4] == 0 and counts[3] > 2 * counts[0]  # expected ratio 3


def test_processes_split_the_same_draw_and_epochs_differ() -> None:
    weights = np.linspace(1, 2, 10)
    ranks = [WeightedImageSampler(weights, seed=3, rank=r, world_size=2) for r in range(2)]
    first = [list(s) for s in ranks]
    assert [len(x) for x in first] == [len(s) for s in ranks] == [5, 5]
    whole = WeightedImageSampler(weights, seed=3)
    assert sorted(first[0] + first[1]) == sorted(whole)
    draws = set()
    for epoch in range(5):
        whole.set_epoch(epoch)
        draws.add(tuple(whole))
    assert len(draws) == 5  # each epoch draws anew


def test_poorly_detected_classes_are_drawn_more_after_validation() -> None:
    records = [_record([0]), _record([1])]
    sampler = WeightedImageSampler(np.ones(2))
    weighting = ImageWeighting(sampler, records, nc=2)
    np.testing.assert_allclose(sampler.weights.numpy(), [0.5, 0.5])
    weighting.update([0.9, 0.1])  # class 1 has the low mAP
    w = sampler.weights.numpy()
    np.testing.assert_allclose(w / w.sum(), [0.01 / 0.82, 0.81 / 0.82])


def test_every_process_draws_as_many_images_even_when_the_count_does_not_divide() -> None:
    ranks = [WeightedImageSampler(np.ones(17), rank=r, world_size=2) for r in range(2)]
    assert [len(list(s)) for s in ranks] == [len(s) for s in ranks] == [9, 9]


def test_rect_blocks_keep_batches_whole_and_equal_per_process() -> None:
    # 10 images in batches of 4: [0-3] [4-7] [8-9]; two processes.
    first, second = (list(RectBlockSampler(10, 4, rank=r, world_size=2)) for r in range(2))
    assert first == [0, 1, 2, 3, 8, 9]
    assert second == [4, 5, 6, 7, 4, 5, 6, 7]  # padded with its own first batch, in front of none shorter
    for indices in (first, second):
        batches = [indices[i : i + 4] for i in range(0, len(indices), 4)]
        assert all(len({index // 4 for index in batch}) == 1 for batch in batches)  # one shape per batch
