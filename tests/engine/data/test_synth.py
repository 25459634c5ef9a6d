"""The generated demo dataset: deterministic, VOC-valid, tight boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yolor_cli.engine.data.images import read_image
from yolor_cli.engine.data.synth import SYNTH_CLASSES, _draw, synthesize
from yolor_cli.engine.data.voc import find_layout, scan_voc
from yolor_cli.engine.errors import DataError


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    synthesize(tmp_path / "a", images=5, seed=7)
    synthesize(tmp_path / "b", images=5, seed=7)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 10
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_annotations_are_valid_voc_with_boxes_on_the_shapes(tmp_path: Path) -> None:
    result = synthesize(tmp_path / "s", images=20, seed=0)
    scan = scan_voc(find_layout(tmp_path / "s"))
    assert len(scan.items) == 20 and not scan.skipped
    assert sum(result.objects.values()) == sum(len(i.annotation.objects) for i in scan.items)
    for item in scan.items:
        image = read_image(item.image)
        assert item.annotation.size == (image.shape[1], image.shape[0])
        for obj in item.annotation.objects:
            assert obj.name in SYNTH_CLASSES
            x0, y0, x1, y1 = (int(v) for v in obj.box)  # 1-based inclusive
            assert 1 <= x0 < x1 <= image.shape[1] and 1 <= y0 < y1 <= image.shape[0]
    assert set(result.objects) == set(SYNTH_CLASSES) and min(result.objects.values()) > 0


def test_refuses_to_write_into_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not an empty folder"):
        synthesize(tmp_path, images=1)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


@pytest.mark.parametrize("shape", SYNTH_CLASSES)
@pytest.mark.parametrize("seed", range(5))
def test_drawn_boxes_are_tight_around_the_shape(shape: str, seed: int) -> None:
    image = np.zeros((200, 240, 3), dtype=np.uint8)
    box = _draw(np.random.default_rng(seed), image, shape, 80, 120, 100)
    ys, xs = np.nonzero(image.any(axis=2))
    assert xs.size, "the shape was drawn"
    # 0-based inclusive corners of the painted pixels, within a pixel of rasterisation.
    assert np.allclose(box, (xs.min(), ys.min(), xs.max(), ys.max()), atol=1)
