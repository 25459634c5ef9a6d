"""The YOLOR loss on a case worked out by hand, and its contracts."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from yolor_cli.engine.config import load_hyp
from yolor_cli.engine.model.bundled import load_cfg
from yolor_cli.engine.model.darknet import build_model
from yolor_cli.engine.train.loss import YolorLoss, build_targets

LN2 = math.log(2)


def _zero_maps(model, size: int = 64) -> list[torch.Tensor]:
    return [torch.zeros(1, 3, size // int(s), size // int(s), 5 + model.nc) for s in model.strides]


def test_hand_computed_case() -> None:
    """One target exactly the size of anchor 1 of level 0 (10 x 18 px = 1.25 x 2.25 cells at stride 8),
    centred at cell (x 3, y 4) of a 64 px image. anchor_t = 1.01 lets only that anchor match, and a
    centre in the middle of its cell adds no neighbour cell.

    All logits 0, except w and h of that prediction, set so (2 sigmoid)^2 = 2: the predicted box is
    the target doubled around the same centre, so IoU = 1/4 and CIoU = IoU (same centre, same shape).
      box = (1 - 0.25) * box_gain                     (3 levels: scale 3/3 = 1)
      obj = ln 2 * (4 + 1 + 0.4) * obj_gain           (BCE at logit 0 is ln 2 whatever the target)
      cls = ln 2 * cls_gain * 3 / 80                  (3 classes: one BCE row at logit 0; gain scaled by nc/80)
    """
    hyp = dataclasses.replace(load_hyp(), anchor_t=1.01)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
    raw = _zero_maps(model)
    logit = math.log(math.sqrt(0.5) / (1 - math.sqrt(0.5)))  # sigmoid = 1/sqrt(2)
    raw[0][0, 1, 4, 3, 2:4] = logit
    targets = torch.tensor([[0, 2, 3.5 / 8, 4.5 / 8, 1.25 / 8, 2.25 / 8]])
    loss, items = YolorLoss(model, hyp)(raw, targets)
    box, obj, cls = 0.75 * hyp.box, LN2 * 5.4 * hyp.obj, LN2 * hyp.cls * 3 / 80
    torch.testing.assert_close(items, torch.tensor([box, obj, cls, box + obj + cls]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, torch.tensor([box + obj + cls]), rtol=1e-5, atol=1e-6)


def test_neighbour_cells_and_anchor_ratio_rule() -> None:
    model = build_model(load_cfg("yolor_csp_tiny"), nc=1)
    anchors = [layer.anchors / layer.stride for layer in model.yolo_layers]
    raw = _zero_maps(model)
    # Centre at x = 3.2, y = 4.8 cells: near the left edge (adds the cell to the left) and the
    # bottom edge (adds the cell below). wh = anchor 1 of level 0.
    targets = torch.tensor([[0, 0, 3.2 / 8, 4.8 / 8, 1.25 / 8, 2.25 / 8]])
    level0 = build_targets(raw, targets, anchors, anchor_t=1.01)[0]
    cells = sorted(zip(level0.gx.tolist(), level0.gy.tolist()))
    assert cells == [(2, 4), (3, 4), (3, 5)] and set(level0.anchor.tolist()) == {1}
    wide = build_targets(raw, targets, anchors, anchor_t=4.0)[0]
    assert set(wide.anchor.tolist()) == {0, 1, 2}  # every anchor within 4x in both sides matches


def test_single_class_has_no_class_loss_and_empty_targets_work() -> None:
    model = build_model(load_cfg("yolor_csp_tiny"), nc=1)
    raw = _zero_maps(model)
    loss, items = YolorLoss(model, load_hyp())(raw, torch.zeros((0, 6)))
    assert items[0] == 0 and items[2] == 0 and items[1] == pytest.approx(LN2 * 5.4 * load_hyp().obj, rel=1e-5)


def test_loss_backpropagates_through_the_model() -> None:
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3).train()
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.3], [1, 0, 0.3, 0.6, 0.1, 0.1]])
    loss, _ = YolorLoss(model, load_hyp())(model(torch.rand(2, 3, 64, 64)), targets)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_focal_loss_down_weights_easy_examples() -> None:
    hyp = dataclasses.replace(load_hyp(), fl_gamma=1.5)
    model = build_model(load_cfg("yolor_csp_tiny"), nc=3)
    raw = _zero_maps(model)
    _, plain = YolorLoss(model, load_hyp())(raw, torch.zeros((0, 6)))
    _, focal = YolorLoss(model, hyp)(raw, torch.zeros((0, 6)))
    # At logit 0 and target 0: (1 - p_t)^1.5 = 0.5^1.5, alpha factor 0.75.
    assert focal[1].item() == pytest.approx(plain[1].item() * 0.75 * 0.5**1.5, rel=1e-5)
