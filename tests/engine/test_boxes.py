"""Property tests for box formats and letterbox geometry."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from yolor_cli.engine.boxes import (
    letterbox_geometry,
    xywh_to_xyxy,
    xywhn_to_xyxy,
    xyxy_to_xywh,
    xyxy_to_xywhn,
)

sides = st.integers(min_value=10, max_value=2000)


@st.composite
def box_in_image(draw):
    width, height = draw(sides), draw(sides)
    x0 = draw(st.floats(0, width - 1))
    y0 = draw(st.floats(0, height - 1))
    x1 = draw(st.floats(x0 + 0.5, width))
    y1 = draw(st.floats(y0 + 0.5, height))
    return width, height, np.array([[x0, y0, x1, y1]])


@given(box_in_image())
def test_label_and_pixel_boxes_round_trip(case) -> None:
    width, height, box = case
    normalised = xyxy_to_xywhn(box, width, height)
    assert (normalised >= 0).all() and (normalised <= 1 + 1e-12).all()
    np.testing.assert_allclose(xywhn_to_xyxy(normalised, width, height), box, atol=1e-6)
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(box)), box, atol=1e-9)


@given(box_in_image())
def test_numpy_and_torch_agree(case) -> None:
    width, height, box = case
    tensor = torch.tensor(box, dtype=torch.float64)
    np.testing.assert_allclose(xyxy_to_xywhn(tensor, width, height).numpy(), xyxy_to_xywhn(box, width, height))


@given(box_in_image(), st.integers(32, 1280), st.integers(32, 1280), st.booleans())
def test_letterbox_maps_and_unmaps_boxes(case, target_h: int, target_w: int, scale_up: bool) -> None:
    width, height, box = case
    geometry = letterbox_geometry((height, width), (target_h, target_w), scale_up=scale_up)
    inside = geometry.to_target(box)
    # The box lands inside the resized image area, never in the padding beyond it.
    assert inside[0, 0] >= geometry.pad[0] - 1e-6 and inside[0, 2] <= geometry.pad[0] + geometry.resized[1] + 1e-6
    assert inside[0, 1] >= geometry.pad[1] - 1e-6 and inside[0, 3] <= geometry.pad[1] + geometry.resized[0] + 1e-6
    np.testing.assert_allclose(geometry.to_source(inside), box, atol=1e-6)


@given(sides, sides, st.integers(32, 1280), st.sampled_from([8, 32, 64]))
def test_minimal_padding_reaches_a_stride_multiple(width: int, height: int, size: int, stride: int) -> None:
    geometry = letterbox_geometry((height, width), (size, size), minimal_pad_stride=stride)
    assert geometry.target[0] - geometry.resized[0] < stride and geometry.target[1] - geometry.resized[1] < stride
    if size % stride == 0:
        assert geometry.target[0] % stride == 0 and geometry.target[1] % stride == 0
