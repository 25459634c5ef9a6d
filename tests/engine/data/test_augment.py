"""Augmentations move boxes exactly as they move pixels, and keep them inside the image."""

from __future__ import annotations

import numpy as np
import pytest

from yolor_cli.engine.data.augment import flip_lr, flip_ud, letterbox, mosaic_canvas, random_perspective

WHITE_THRESHOLD = 128
PIXEL_TOLERANCE = 1.5  # interpolation blurs an edge by about a pixel


def _scene(width: int = 200, height: int = 160, box: tuple[int, int, int, int] = (40, 30, 120, 90)):
    image = np.zeros((height, width, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 255
    return image, np.array([[0, x0, y0, x1, y1]], dtype=np.float64)


def _pixel_box(image: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(image[..., 0] > WHITE_THRESHOLD)
    return None if xs.size == 0 else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


@pytest.mark.parametrize("seed", range(25))
def test_affine_warp_moves_boxes_with_pixels(seed: int) -> None:
    image, labels = _scene()
    out, moved = random_perspective(image, labels, np.random.default_rng(seed), translate=0.2, scale=0.5)
    found = _pixel_box(out)
    if len(moved) == 0:  # filtered out: then little or nothing of the object may be left visible
        assert found is None or (found[2] - found[0]) * (found[3] - found[1]) < 0.1 * 80 * 60 * 1.5**2
        return
    np.testing.assert_allclose(moved[0, 1:], found, atol=PIXEL_TOLERANCE)


@pytest.mark.parametrize("seed", range(10))
def test_rotation_shear_and_perspective_keep_the_object_inside_its_box(seed: int) -> None:
    image, labels = _scene()
    out, moved = random_perspective(
        image, labels, np.random.default_rng(seed), degrees=30, translate=0.1, scale=0.3, shear=10, perspective=0.0005
    )
    height, width = out.shape[:2]
    if len(moved):
        x0, y0, x1, y1 = moved[0, 1:]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        found = _pixel_box(out)
        assert found is not None
        assert found[0] >= x0 - PIXEL_TOLERANCE and found[1] >= y0 - PIXEL_TOLERANCE
        assert found[2] <= x1 + PIXEL_TOLERANCE and found[3] <= y1 + PIXEL_TOLERANCE


def test_flips_move_boxes_with_pixels() -> None:
    image, labels = _scene()
    for flip in (flip_lr, flip_ud):
        out, moved = flip(image, labels)
        np.testing.assert_allclose(moved[0, 1:], _pixel_box(out))


@pytest.mark.parametrize("target", [(320, 320), (256, 320), (96, 64)])
def test_letterbox_moves_boxes_with_pixels(target: tuple[int, int]) -> None:
    image, labels = _scene()
    out, geometry = letterbox(image, target)
    assert out.shape[:2] == target
    moved = geometry.to_target(labels[:, 1:5])
    np.testing.assert_allclose(moved[0], _pixel_box(out), atol=PIXEL_TOLERANCE)
    np.testing.assert_allclose(geometry.to_source(moved), labels[:, 1:5], atol=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_mosaic_then_warp_keeps_boxes_inside_and_on_their_objects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tiles, tile_labels = [], []
    for position in range(4):
        image, labels = _scene(width=150 + 20 * position, height=120, box=(20 + position, 20, 100, 80))
        tiles.append(image)
        tile_labels.append(labels)
    canvas, labels = mosaic_canvas(tiles, tile_labels, 160, rng)
    assert canvas.shape == (320, 320, 3)
    out, moved = random_perspective(canvas, labels, rng, translate=0.1, scale=0.5, border=(-80, -80))
    assert out.shape == (160, 160, 3)
    for _, x0, y0, x1, y1 in moved:
        assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 160
        inner = out[int(np.ceil(y0)) + 1 : int(y1) - 1, int(np.ceil(x0)) + 1 : int(x1) - 1, 0]
        assert inner.size == 0 or inner.mean() > 200  # the box covers white object pixels
